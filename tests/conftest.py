import signal

pytest_plugins = ["migrator.sandbox.pytest_plugin"]

# A test session started in the background of a non-interactive shell inherits SIGINT ignored, and so
# would every `migrate` it starts (an ignored signal stays ignored across exec): the Ctrl-C tests would
# then fail for a reason of the launch, not of migrate. A handler of our own is reset to the default in
# each child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
