"""The crowd oracle's aggregation: a label it returns is one the item's workers gave."""

import pandas as pd

from active.oracles import aggregate_dawid_skene

# One round the end-to-end crowd test saw now and then: 24 items x 3 simulated workers (0.85
# accurate, six classes). Dawid-Skene alone, fitted on these 72 answers, makes "ladybird" the most
# probable label of item 22, which nobody gave: sim0 and sim1 said "tigerhorn" and sim2 "dragon"
# on item 10, the only item it believes is a ladybird.
VOTES = """tigerhorn tigerhorn lemur|tigerhorn tigerhorn tigerhorn|tigerhorn tigerhorn lemur|rhino dragon tigerhorn|
tigerhorn tigerhorn tigerhorn|dragon tigerhorn rhino|tigerhorn bee bee|lemur lemur lemur|tigerhorn lemur tigerhorn|
tigerhorn tigerhorn tigerhorn|ladybird tigerhorn dragon|rhino tigerhorn rhino|rhino rhino rhino|
tigerhorn tigerhorn rhino|lemur lemur lemur|tigerhorn rhino tigerhorn|tigerhorn bee lemur|dragon dragon dragon|
rhino rhino dragon|bee bee dragon|bee bee bee|lemur lemur dragon|tigerhorn tigerhorn dragon|tigerhorn tigerhorn ladybird"""


def _frame():
    items = [v.split() for v in VOTES.replace("\n", "").split("|")]
    return pd.DataFrame([{"task": f"pool-{i}", "worker": f"sim{w}", "label": lab}
                         for i, votes in enumerate(items) for w, lab in enumerate(votes)])


def test_the_crowd_label_is_one_the_workers_gave():
    frame = _frame()
    labels = aggregate_dawid_skene(frame)
    assert len(labels) == 24
    given = frame.groupby("task")["label"].agg(set)
    assert all(labels[t] in given[t] for t in labels.index), [t for t in labels.index if labels[t] not in given[t]]
    assert labels["pool-22"] == "tigerhorn"  # two of three workers; Dawid-Skene alone says "ladybird"
    # unanimous items keep their label; elsewhere the posterior decides among the given labels
    assert labels["pool-7"] == "lemur" and labels["pool-10"] == "ladybird"
