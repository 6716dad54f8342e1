from vecpress.cli import app

if __name__ == "__main__":  # spawned tokeniser processes import this module as __mp_main__
    app()
