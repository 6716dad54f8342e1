"""Stage logic as plain typed functions and classes; runs with or without Prefect."""
