"""The SQL notebooks, installed as package data of ``varflow.notebooks`` (setup.py): ``varflow
examples DIR`` copies them, with the deployment and automation examples, into a folder."""
