# Makes the repository root importable for the tests (pytest puts a rootdir conftest's folder on sys.path).
