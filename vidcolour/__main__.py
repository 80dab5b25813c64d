from vidcolour.cli import main

main()
