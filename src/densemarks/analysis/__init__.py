"""Analysis of points (numpy only): metrics, evaluation of prediction files, label noise, dataset
reports and summaries, pictures."""
