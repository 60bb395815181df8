from board.cli import main

main()
