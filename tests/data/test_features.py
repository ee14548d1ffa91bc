import numpy as np

from splitmesh.data.features import FeaturePrep


def test_preparation_is_fitted_on_training_rows_only():
    train_num = np.array([[1.0, np.nan], [3.0, 4.0], [5.0, 6.0]])
    train_cat = np.array([["a"], ["b"], [None]], dtype=object)
    prep = FeaturePrep.fit(train_num, train_cat)
    np.testing.assert_allclose(prep.numeric.mean, [3.0, 5.0])
    assert prep.numeric.holes == (1,)  # a gap in training: a "was missing" column
    assert prep.categorical.cardinalities == (3,)  # a, b, plus 0 for missing/unseen
    x, codes = prep.transform(np.array([[100.0, np.nan]]), np.array([["zzz"]], dtype=object))
    assert x.shape == (1, 3) and x[0, 1] == 0.0 and x[0, 2] == 1.0
    assert x[0, 0] == (100.0 - 3.0) / prep.numeric.std[0]
    assert codes.tolist() == [[0]]  # unseen in training
    again = FeaturePrep.from_dict(prep.to_dict())
    np.testing.assert_array_equal(again.transform(train_num, train_cat)[0],
                                  prep.transform(train_num, train_cat)[0])  # fmt: skip
