"""``vidcolour batch`` and ``vidcolour report``: a folder of films colourised resumably.

plan (what the batch will do) -> runner (each file colourised, checked and recorded) ->
ledger (one SQLite database that says what happened to every file) -> report (what a batch
did, from its ledger); progress is what a running batch shows.
"""
