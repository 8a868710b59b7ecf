"""utils.retrieval: the retrieval examples a run keeps for the report's picture."""
import numpy as np
import pytest
import torch

from utils.retrieval import ball_statistics, examples

DB = torch.tensor([[1, 1, 1, 1], [1, 1, 1, -1], [1, 1, 1, 1], [-1, -1, 1, 1], [-1, -1, -1, -1]]).float()
NAMES = ["a", "b", "c", "d", "e"]


def test_single_label_examples_by_hand():
    """Query 0 = 1111: distances 0, 1, 0, 2, 4 -> a, c (tie at 0 in database order), b;
    query 1 = --11: 2, 3, 2, 0, 2 -> d, then a, c, e tied at 2. Relevance: same class.
    Catches an unstable or reversed sort, a wrong distance, or relevance by another rule."""
    q = torch.tensor([[1, 1, 1, 1], [-1, -1, 1, 1]]).float()
    got = examples(q, DB, np.array([0, 1]), np.array([0, 0, 1, 1, 0]), ["q0", "q1"], NAMES, top=3)
    assert got == [
        {"query": "q0", "top": ["a", "c", "b"], "distance": [0, 0, 1], "relevant": [True, False, True], "tied": 3},
        {"query": "q1", "top": ["d", "a", "c"], "distance": [0, 2, 2], "relevant": [True, False, True], "tied": 4},
    ]


def test_multi_label_relevance_is_a_shared_label_and_only_the_first_queries_are_kept():
    """Multi-hot labels: relevant when at least one label is shared (as the originals), not
    when the rows are equal. Only `queries` queries are kept."""
    q = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]).float()
    ql = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 0]])
    dl = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]])
    got = examples(q, DB, ql, dl, ["q0", "q1", "q2"], NAMES, queries=2, top=5)
    assert [g["query"] for g in got] == ["q0", "q1"]
    assert got[0]["top"] == ["a", "c", "b", "d", "e"]
    assert got[0]["relevant"] == [True, False, True, True, False]
    assert got[1]["relevant"] == [False, True, True, False, False]
    assert got[0]["tied"] == 5


def test_ball_statistics_by_hand():
    """Queries (+1, +1) and (-1, -1), database (+1, +1), (+1, -1), (+1, +1), radius 0: the
    balls hold 2 and 0 items, so half the balls are empty, the median is 1 item and a ball
    holds (2/3 + 0) / 2 = 1/3 of the database on average; at radius 2 every ball holds all 3.
    Catches the empty share taken over the database, or the mean share not divided by N."""
    q = np.array([[1, 1], [-1, -1]])
    d = np.array([[1, 1], [1, -1], [1, 1]])
    assert ball_statistics(q, d, 0) == {"radius": 0, "empty_ball_share": 0.5, "ball_items_median": 1.0,
                                        "ball_database_share": pytest.approx(1 / 3)}
    assert ball_statistics(q, d, 2) == {"radius": 2, "empty_ball_share": 0.0, "ball_items_median": 3.0,
                                        "ball_database_share": 1.0}
