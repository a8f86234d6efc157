from rentan.cli import app

app(prog_name="rentan")
