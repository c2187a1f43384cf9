"""Feature encoding and representation checks: values, and a clear error for every bad input."""
import numpy as np
import pandas as pd
import pytest

from fastmlem.encoding import encode_features, interaction_names, prepare_representations


def test_dataframe_encoding_mixed_types():
    df = pd.DataFrame({
        "number": pd.Series(["sg", "pl", "sg", None], dtype="string"),
        "tense": pd.Categorical(["past", "present", "past", "past"]),
        "animate": [True, False, True, False],
        "freq": [1.0, 3.0, 2.0, np.nan],
    })
    before = df.copy()
    X, names = encode_features(df)
    assert names == ["number", "tense", "animate", "freq"]
    assert X.dtype == np.float64 and X.shape == (4, 4)
    assert np.isnan(X[3, 0]) and X[0, 0] == X[2, 0] != X[1, 0]
    np.testing.assert_allclose(X[:3, 3], [0.0, 1.0, 0.5])
    pd.testing.assert_frame_equal(df, before)


def test_interaction_names_order():
    assert interaction_names(["a", "b", "c"]) == ["a", "b x a", "b", "c x a", "c x b", "c"]


@pytest.mark.parametrize("X,match", [
    (pd.DataFrame(), "empty"),
    (pd.DataFrame({"a": [1, 1, 1]}), "constant"),
    (np.array([[0.0, 1.0], [1.0, 0.0]]), "at least 3"),
    (np.array([[0.0], [np.inf], [1.0]]), "infinite"),
    (np.zeros((3, 2, 2)), "2-D"),
])
def test_bad_features(X, match):
    with pytest.raises(ValueError, match=match):
        encode_features(X)


def test_bad_feature_dtype():
    with pytest.raises(TypeError, match="numeric"):
        encode_features(np.array([["a"], ["b"], ["c"]]))


def test_representations():
    Y = np.random.default_rng(0).normal(size=(5, 2, 3)).astype(np.float32)
    out = prepare_representations(Y, 5)
    assert out.shape == (5, 6) and out.dtype == np.float32
    assert prepare_representations(np.arange(5), 5).shape == (5, 1)
    with pytest.raises(ValueError, match="5 stimuli but Y has 4"):
        prepare_representations(np.zeros((4, 3)), 5)
    with pytest.raises(ValueError, match="NaN"):
        prepare_representations(np.array([[np.nan], [0.0], [1.0]]), 3)
    with pytest.raises(ValueError, match="symmetric"):
        prepare_representations(np.array([[0, 1, 2], [0, 0, 1], [2, 1, 0.0]]), 3, precomputed=True)


def test_array_features_come_back_as_contiguous_float64():
    X = np.asfortranarray(np.random.default_rng(0).integers(0, 2, (6, 3)).astype(np.float32))
    X_enc, _ = encode_features(X)
    assert X_enc.dtype == np.float64 and X_enc.flags.c_contiguous
    np.testing.assert_array_equal(X_enc, X)
    Xd = np.abs(X[:, None] - X[None]).astype(np.float32)
    assert encode_features(Xd, precomputed=True)[0].dtype == np.float64
