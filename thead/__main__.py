from thead.cli import run

run()
