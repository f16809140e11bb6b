from convkit.cli import main

main(prog_name="convkit")
