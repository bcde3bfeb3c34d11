from daprforge.cli import app

app(prog_name="daprforge")
