from reportsvc.cli import main

main()
