from vidcolour.entry import main

main()
