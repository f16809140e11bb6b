from convkit.cli import run

run()
