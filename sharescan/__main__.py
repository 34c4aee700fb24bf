from sharescan.cli import main

main()
