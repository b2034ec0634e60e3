"""Stand-ins: small stdlib-only HTTP servers that play the platform's applications in the sandbox.

They run inside the sandbox's containers (image ``sevensa-sandbox/standin``) as ``python3.11 /standins/X.py``
and say so: every /version answer carries ``"standin": true``.
"""
