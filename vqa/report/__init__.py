"""Reports from run folders: the paper's tables with statistics over seeds, its figures, and the grid.

runs.py reads run folders (config.yaml, metrics.jsonl) and names each run's arm; stats.py has the
intervals, t tests and the Holm adjustment (scipy.stats); compare.py turns runs into every number of
`vqa compare` and writes the report (claims.py gives the verdicts on the paper's claims, tables.py
renders the text, figures.py the PNGs); paper.py trains the models x arms x seeds grid behind
`vqa paper` and compares it.
"""
