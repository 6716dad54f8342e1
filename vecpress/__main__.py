from vecpress.cli import app

app()
