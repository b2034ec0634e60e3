from migrator.entry import main

main()
