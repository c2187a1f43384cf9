"""The bundled sentence data set: shapes, dtypes, balanced design, layers argument, clear errors."""
import itertools

import numpy as np
import pandas as pd
import pytest

from fastmlem.datasets import (SENTENCE_FEATURES, SENTENCE_LAYERS, load_sentences,
                               sentences_metadata)

N, D = 768, 384


@pytest.fixture(scope="module")
def data():
    return load_sentences(return_text=True)


def test_shapes_and_dtypes(data):
    features, reps, text = data
    assert isinstance(features, pd.DataFrame)
    assert features.shape == (N, len(SENTENCE_FEATURES))
    assert list(features.columns) == list(SENTENCE_FEATURES)
    assert "sentence" not in features.columns
    for name, levels in SENTENCE_FEATURES.items():
        assert isinstance(features[name].dtype, pd.CategoricalDtype)
        assert list(features[name].cat.categories) == list(levels)
        assert not features[name].isna().any()
    assert list(reps) == list(SENTENCE_LAYERS) and len(SENTENCE_LAYERS) == 7
    for arr in reps.values():
        assert isinstance(arr, np.ndarray) and arr.shape == (N, D) and arr.dtype == np.float32
        assert np.isfinite(arr).all()
        assert arr.flags.writeable
    assert isinstance(text, pd.Series) and len(text) == N
    assert text.index.equals(features.index)
    assert text.map(lambda s: isinstance(s, str)).all()
    assert text.is_unique


def test_design_balanced_and_unconfounded(data):
    features = data[0]
    for name in features:
        assert (features[name].value_counts() == N // 2).all()
    for a, b in itertools.combinations(features.columns, 2):
        counts = pd.crosstab(features[a], features[b]).to_numpy()
        assert (counts == N // 4).all(), (a, b)
    # full factorial: every one of the 2**6 cells holds the same number of sentences
    cells = features.astype(str).agg("|".join, axis=1).value_counts()
    assert len(cells) == 2 ** len(SENTENCE_FEATURES) and (cells == N // 64).all()


def test_text_matches_features(data):
    features, _, text = data
    words = text.str.rstrip(".").str.lower().str.split()
    assert (words.map(len) == 9).all()
    embedded = features["attachment"] == "subject"
    # centre-embedded relative clauses follow the subject noun directly
    assert (words[embedded].map(lambda w: w[2]) == "that").all()
    assert (words[~embedded].map(lambda w: w[5]) == "that").all()
    obj_rel = features["rc_type"] == "object_relative"
    rc_first = words.map(lambda w: w[w.index("that") + 1])
    assert (rc_first[obj_rel] == "the").all() and (rc_first[~obj_rel] != "the").all()
    lex = sentences_metadata()["lexical"]
    plural_subject = lex["subject_noun"].isin(
        ["boys", "kings", "men", "fathers", "brothers", "sons", "uncles", "princes", "husbands",
         "actors", "nephews", "waiters", "girls", "queens", "women", "mothers", "sisters",
         "daughters", "aunts", "princesses", "wives", "actresses", "nieces", "waitresses"])
    assert (plural_subject == (features["subject_number"] == "plural")).all()
    # subject-verb agreement in the present tense: main verb ends in "s" iff subject singular
    present = features["tense"] == "present"
    main_verb = [w[6] if e else w[2] for w, e in zip(words, embedded)]
    main_verb = pd.Series(main_verb, index=features.index)
    singular = features["subject_number"] == "singular"
    assert main_verb[present & singular].str.endswith("s").all()
    assert not main_verb[present & ~singular].str.endswith("s").any()


def test_representations_differ_across_layers_and_sentences(data):
    reps = data[1]
    stacked = np.stack(list(reps.values()))
    assert stacked.std(axis=1).mean() > 0.01         # sentences are not all the same vector
    for a, b in zip(SENTENCE_LAYERS, SENTENCE_LAYERS[1:]):
        assert not np.allclose(reps[a], reps[b])


@pytest.mark.parametrize("layer,name", [("layer_3", "layer_3"), (3, "layer_3"), (0, "embeddings"),
                                        (-1, "layer_6"), (np.int64(6), "layer_6")])
def test_single_layer(data, layer, name):
    features, arr = load_sentences(layers=layer)
    assert isinstance(arr, np.ndarray) and arr.shape == (N, D)
    np.testing.assert_array_equal(arr, data[1][name])
    assert len(features) == N


def test_layer_list_and_dtype(data):
    _, reps = load_sentences(layers=["layer_6", 1, "embeddings"], dtype=np.float64)
    assert list(reps) == ["layer_6", "layer_1", "embeddings"]
    for name, arr in reps.items():
        assert arr.dtype == np.float64
        np.testing.assert_array_equal(arr, data[1][name].astype(np.float64))
    _, arr16 = load_sentences(layers=(2,), dtype="float16")
    assert arr16["layer_2"].dtype == np.float16


def test_returned_arrays_are_copies():
    _, a = load_sentences(layers=1)
    a[:] = 0
    _, b = load_sentences(layers=1)
    assert np.abs(b).sum() > 0


@pytest.mark.parametrize("layers,exc,match", [
    ("layer_7", ValueError, "unknown layer"),
    ("Layer_1", ValueError, "valid names"),
    (7, ValueError, "out of range"),
    (-8, ValueError, "out of range"),
    ([], ValueError, "empty"),
    (["layer_1", 1], ValueError, "more than once"),
    (True, TypeError, "layers must be"),
    (1.0, TypeError, "layers must be"),
    ([1.5], TypeError, "name .* or an index"),
    ({"layer_1"}, TypeError, "layers must be"),
])
def test_bad_layers(layers, exc, match):
    with pytest.raises(exc, match=match):
        load_sentences(layers=layers)


@pytest.mark.parametrize("dtype", [np.int32, "int64", bool, "not-a-dtype"])
def test_bad_dtype(dtype):
    with pytest.raises(TypeError, match="dtype"):
        load_sentences(dtype=dtype)


def test_metadata():
    meta = sentences_metadata()
    assert meta["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "mean" in meta["pooling"]
    assert isinstance(meta["generator_seed"], int)
    assert meta["n_sentences"] == N and meta["layers"] == list(SENTENCE_LAYERS)
    assert {k: tuple(v) for k, v in meta["features"].items()} == SENTENCE_FEATURES
    assert meta["lexical"].shape == (N, 5)
    assert meta["n_tokens"].shape == (N,) and meta["n_tokens"].min() >= 11
    # every lexical item is used equally often within the design
    for col in ["object_noun", "rc_noun", "main_verb", "rc_verb"]:
        counts = meta["lexical"][col].value_counts()
        assert counts.nunique() == 1, col
