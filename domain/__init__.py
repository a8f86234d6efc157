"""Pure domain rules of rentan, shared by the API (instant validation) and the workflows.

Nothing here does I/O at import time or reads the clock: workflow code imports these modules
through the sandbox, and the same rule must give the same answer on replay.
"""
