"""Explanations: exact TreeSHAP for the LightGBM churn and CLV models, and the top reasons per customer.

* **Values.** :class:`TreeShap` computes the path-dependent TreeSHAP values of a ``lightgbm.Booster``
  — the values ``Booster.predict(..., pred_contrib=True)`` and
  ``shap.TreeExplainer(feature_perturbation="tree_path_dependent")`` return — equal to them up to
  floating-point rounding (tested to 1e-9), several times faster (``benchmarks/explain_backends.py``).
  It follows Fast TreeSHAP v2 (Yang 2021, arXiv:2109.09847): what a leaf adds to each feature's
  value depends on the sample only through *which* of the conditions on the leaf's path it meets, so
  a table per leaf (one entry per pattern of met conditions, 2**k for k distinct features on the
  path) is computed once, and each sample then costs one table look-up per feature on each path.
  Leaves with too many distinct features for a table (very deep trees) are computed per sample
  from the same formula. The kernels are compiled with numba and run on threads, without the GIL.
* **Reasons.** :func:`top_reasons` turns the values into a long table of the ``k`` strongest reasons
  per customer, with the feature's value, its contribution, what that means on the probability
  (churn) or the expected spend (CLV), and a sentence built from :func:`crmscore.features.describe`
  that says which way the feature moves the risk or the spend and by how much. A churn customer above
  the base rate gets the features that raise the risk most, one below it those that keep it low.

Exactness. With ``o_j`` = 1 when the sample meets every condition on feature ``j`` along the path of
leaf ``l`` (value ``v``, distinct features ``U``, ``k = |U|``) and ``z_j`` the share of the training
rows that take those branches, the path-dependent value function of the leaf is
``v · Π_{j∈S} o_j · Π_{j∈U\\S} z_j``, so with ``B`` = the features met,
``H(P) = Σ_m w(|P| − m) e_m(z_P)`` (``e_m`` the elementary symmetric polynomials, ``w(s) = s!(k−s−1)!/k!``)
and ``T(P) = v · H(P) · Π_{j∉P} z_j``:

* every feature not met gets ``−T(B)``;
* a feature ``i`` met gets ``(1 − z_i) / z_i · T(B \\ {i})``.

The table of a leaf holds ``T(P)`` for every pattern ``P`` (leaves with a zero share on their path,
which LightGBM never grows, are computed per sample). Samples are routed as LightGBM routes them on
x86-64: ``<=`` thresholds, missing values (``NaN`` / zero / none, ``default_left``), categorical
splits (bitsets; negative, ``NaN``, out-of-range and unseen codes go right).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from numba import njit

from crmscore.features import describe
from crmscore.parallel import thread_budget

__all__ = ["TreeShap", "TreeShapCache", "tree_shap", "top_reasons", "REASON_COLUMNS"]

# Decision-type bits of LightGBM's model format (include/LightGBM/tree.h).
_CATEGORICAL_MASK = 1
# LightGBM's kZeroThreshold is the float literal 1e-35f widened to double.
_ZERO_THRESHOLD = float(np.float32(1e-35))
# Rows processed together tree by tree, so that a tree's tables stay in cache across them.
_ROW_BLOCK = 512

REASON_COLUMNS = [
    "customer_id",
    "model",
    "rank",
    "feature",
    "value",
    "contribution",
    "probability_change",
    "relative_spend_change",
    "text",
]


# --- model parsing ------------------------------------------------------------------------------------


@dataclass
class _Tree:
    """One tree in LightGBM's own arrays (node ``i``'s children: ``>= 0`` node, ``< 0`` leaf ``~c``)."""

    split_feature: np.ndarray
    threshold: np.ndarray
    decision_type: np.ndarray
    left_child: np.ndarray
    right_child: np.ndarray
    leaf_value: np.ndarray
    leaf_count: np.ndarray
    internal_count: np.ndarray
    cat_boundaries: np.ndarray
    cat_threshold: np.ndarray

    @property
    def num_leaves(self) -> int:
        return len(self.leaf_value)

    def expected_value(self) -> float:
        """The tree's mean output over its training rows, summed in LightGBM's order (``Tree::ExpectedValue``)."""
        if self.num_leaves == 1:
            return float(self.leaf_value[0])
        total = float(self.internal_count[0])
        value = 0.0
        for count, leaf in zip(self.leaf_count, self.leaf_value, strict=True):
            value += (float(count) / total) * float(leaf)
        return value


def _numbers(fields: dict[str, str], key: str, dtype: type) -> np.ndarray:
    text = fields.get(key, "").strip()
    return np.array(text.split(), dtype=dtype) if text else np.empty(0, dtype=dtype)


def _parse_model(model: str) -> tuple[dict[str, str], list[_Tree]]:
    """Header fields and trees of a LightGBM text model (``Booster.model_to_string``); exact round trip."""
    head, _, rest = model.partition("\nTree=")
    header = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    trees: list[_Tree] = []
    body = rest.split("end of trees", 1)[0]
    for block in ("Tree=" + body).split("\nTree=") if body else []:
        fields = dict(line.split("=", 1) for line in block.strip().splitlines() if "=" in line)
        if fields.get("is_linear", "0").strip() not in ("", "0"):
            raise ValueError("TreeShap: linear trees (linear_tree=true) have no TreeSHAP values")
        trees.append(
            _Tree(
                split_feature=_numbers(fields, "split_feature", np.int32),
                threshold=_numbers(fields, "threshold", np.float64),
                decision_type=_numbers(fields, "decision_type", np.int32).astype(np.int8),
                left_child=_numbers(fields, "left_child", np.int32),
                right_child=_numbers(fields, "right_child", np.int32),
                leaf_value=_numbers(fields, "leaf_value", np.float64),
                leaf_count=_numbers(fields, "leaf_count", np.float64),
                internal_count=_numbers(fields, "internal_count", np.float64),
                cat_boundaries=_numbers(fields, "cat_boundaries", np.int64),
                cat_threshold=_numbers(fields, "cat_threshold", np.uint32),
            )
        )
    return header, trees


@dataclass
class _Ensemble:
    """All selected trees flattened into the arrays the kernel reads, in field order (:meth:`kernel_args`).

    Nodes and leaves are numbered globally (tree by tree). A node's ``node_slot`` is the position of
    its split feature among the distinct features on the path from the root to it; the same feature
    has the same position for every leaf below, so the kernel can carry a bit mask of the features
    whose conditions a sample fails down the tree. ``node_left_at`` / ``node_right_at`` say where a
    child's mask goes: ``< n_internal`` a node, else leaf ``at − n_internal`` (tree-local numbers).
    """

    tree_node_start: np.ndarray
    tree_n_internal: np.ndarray
    tree_leaf_start: np.ndarray
    tree_masked: np.ndarray
    node_feature: np.ndarray
    node_threshold: np.ndarray
    node_decision: np.ndarray
    node_cat_start: np.ndarray
    node_cat_words: np.ndarray
    node_slot: np.ndarray
    node_left_at: np.ndarray
    node_right_at: np.ndarray
    cat_bits: np.ndarray
    leaf_value: np.ndarray
    leaf_k: np.ndarray
    leaf_step_start: np.ndarray
    leaf_slot_start: np.ndarray
    leaf_table_start: np.ndarray
    step_node: np.ndarray
    step_left: np.ndarray
    step_slot: np.ndarray
    slot_feature: np.ndarray
    slot_zero: np.ndarray
    slot_one_minus_zero: np.ndarray
    slot_met_ratio: np.ndarray
    table: np.ndarray
    weights: np.ndarray
    max_internal: int
    max_k: int

    def kernel_args(self) -> tuple:
        return tuple(getattr(self, field.name) for field in fields(self))


# Trees whose paths have more distinct features than this are routed step by step (no 64-bit mask).
_MAX_MASK_SLOTS = 62


def _flatten(trees: list[_Tree], max_table_bits: int, max_table_bytes: int, n_jobs: int) -> _Ensemble:
    """Flatten ``trees`` into :class:`_Ensemble` arrays and precompute the leaf tables."""
    n_internal = np.array([tree.num_leaves - 1 for tree in trees], dtype=np.int64)
    tree_node_start = np.cumsum(n_internal) - n_internal
    tree_leaf_start = np.cumsum(n_internal + 1) - (n_internal + 1)
    split = [tree for tree in trees if tree.num_leaves > 1]

    def joined(name: str, dtype: type) -> np.ndarray:
        parts = [getattr(tree, name) for tree in split]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    node_decision = joined("decision_type", np.int64)
    node_feature = joined("split_feature", np.int64)
    # Where each node's children keep their masks in the kernel: nodes as they are, leaf j at n_internal + j.
    left_at, right_at, cat_start, cat_words, cat_bits = [], [], [], [], []
    n_cat_words = 0
    for tree in split:
        inner = tree.num_leaves - 1
        left_at.append(np.where(tree.left_child >= 0, tree.left_child, inner + ~tree.left_child))
        right_at.append(np.where(tree.right_child >= 0, tree.right_child, inner + ~tree.right_child))
        categorical = (tree.decision_type & _CATEGORICAL_MASK) > 0
        index = np.where(categorical, tree.threshold, 0).astype(np.int64)
        bounds = tree.cat_boundaries if len(tree.cat_boundaries) else np.zeros(2, dtype=np.int64)
        index = np.minimum(index, len(bounds) - 2)
        cat_start.append(np.where(categorical, n_cat_words + bounds[index], 0))
        cat_words.append(np.where(categorical, bounds[index + 1] - bounds[index], 0))
        cat_bits.append(tree.cat_threshold)
        n_cat_words += len(tree.cat_threshold)
    leaf_value = np.concatenate([tree.leaf_value for tree in trees]) if trees else np.zeros(0)

    def stacked(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    paths = _leaf_paths(
        n_internal,
        tree_node_start,
        tree_leaf_start,
        node_feature,
        joined("left_child", np.int64),
        joined("right_child", np.int64),
        joined("internal_count", np.float64),
        np.concatenate([tree.leaf_count if tree.num_leaves > 1 else np.ones(1) for tree in trees]).astype(np.float64)
        if trees
        else np.zeros(0),
    )
    leaf_k, leaf_step_start, leaf_slot_start, step_node, step_left, step_slot, slot_feature, slot_zero, node_slot = (
        paths
    )
    n_leaves = len(leaf_k)
    tree_max_k = np.maximum.reduceat(leaf_k, tree_leaf_start) if n_leaves else np.zeros(len(trees), dtype=np.int64)
    tree_masked = tree_max_k <= _MAX_MASK_SLOTS
    tree_of_leaf = np.repeat(np.arange(len(trees)), n_internal + 1)

    # A table needs the tree's masks and a positive share on every step (its entries are divided by
    # them); tables go to the leaves with the fewest distinct features first, within the size cap.
    smallest_zero = np.ones(n_leaves)
    has_path = leaf_k > 0
    if has_path.any():
        smallest_zero[has_path] = np.minimum.reduceat(slot_zero, leaf_slot_start[:-1][has_path])
    eligible = has_path & (leaf_k <= max_table_bits) & (smallest_zero > 0) & tree_masked[tree_of_leaf]
    order = np.argsort(np.where(eligible, leaf_k, np.iinfo(np.int64).max), kind="stable")[: int(eligible.sum())]
    sizes = np.left_shift(np.int64(1), leaf_k[order])
    end = np.cumsum(sizes)
    fits = end * 8 <= max_table_bytes
    leaf_table_start = np.full(n_leaves, -1, dtype=np.int64)
    leaf_table_start[order[fits]] = (end - sizes)[fits]
    table = np.zeros(int(end[fits][-1]) if fits.any() else 0, dtype=np.float64)

    max_k = int(leaf_k.max()) if n_leaves else 0
    with np.errstate(divide="ignore", invalid="ignore"):
        met_ratio = np.where(slot_zero > 0, (1.0 - slot_zero) / slot_zero, 0.0)
    ensemble = _Ensemble(
        tree_node_start=tree_node_start,
        tree_n_internal=n_internal,
        tree_leaf_start=tree_leaf_start,
        tree_masked=tree_masked,
        node_feature=node_feature,
        node_threshold=joined("threshold", np.float64),
        node_decision=node_decision,
        node_cat_start=stacked(cat_start),
        node_cat_words=stacked(cat_words),
        node_slot=node_slot,
        node_left_at=stacked(left_at),
        node_right_at=stacked(right_at),
        cat_bits=np.concatenate([*cat_bits, np.zeros(1, dtype=np.uint32)]).astype(np.uint32),
        leaf_value=leaf_value.astype(np.float64),
        leaf_k=leaf_k,
        leaf_step_start=leaf_step_start,
        leaf_slot_start=leaf_slot_start,
        leaf_table_start=leaf_table_start,
        step_node=step_node,
        step_left=step_left,
        step_slot=step_slot,
        slot_feature=slot_feature,
        slot_zero=slot_zero,
        slot_one_minus_zero=1.0 - slot_zero,
        slot_met_ratio=met_ratio,
        table=table,
        weights=_shapley_weights(max_k),
        max_internal=int(n_internal.max()) if len(trees) else 0,
        max_k=max_k,
    )
    tabled = np.flatnonzero(leaf_table_start >= 0)
    if len(tabled):
        largest = int(leaf_k[tabled].max())
        chunks = [c for c in np.array_split(tabled, max(1, min(n_jobs, len(tabled) // 64))) if len(c)]

        def fill(leaves: np.ndarray) -> None:
            _fill_tables(
                table,
                leaves,
                leaf_table_start,
                leaf_k,
                leaf_value,
                leaf_slot_start,
                slot_zero,
                ensemble.weights,
                largest,
            )

        if len(chunks) == 1:
            fill(chunks[0])
        else:
            with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
                for future in [pool.submit(fill, chunk) for chunk in chunks]:
                    future.result()
    return ensemble


@njit(cache=True)
def _leaf_paths(
    n_internal, tree_node_start, tree_leaf_start, node_feature, node_left, node_right, node_count, leaf_count
):  # pragma: no cover
    """For every leaf, its path from the root (steps) and the distinct features on it (slots).

    Returns ``leaf_k``, ``leaf_step_start``, ``leaf_slot_start`` (both with a closing entry),
    ``step_node`` (tree-local), ``step_left``, ``step_slot``, ``slot_feature``, ``slot_zero`` (the
    share of training rows taking the path's branches on that feature, multiplied over repeats, as
    LightGBM's TreeSHAP does) and ``node_slot``.
    """
    n_trees = len(n_internal)
    n_leaves = 0
    for t in range(n_trees):
        n_leaves += n_internal[t] + 1
    n_nodes = len(node_feature)
    node_parent = np.full(n_nodes, -1, dtype=np.int64)
    leaf_parent = np.full(n_leaves, -1, dtype=np.int64)
    leaf_is_left = np.zeros(n_leaves, dtype=np.bool_)
    node_is_left = np.zeros(n_nodes, dtype=np.bool_)
    for t in range(n_trees):
        node0, leaf0 = tree_node_start[t], tree_leaf_start[t]
        for j in range(n_internal[t]):
            for side in range(2):
                child = node_left[node0 + j] if side == 0 else node_right[node0 + j]
                if child >= 0:
                    node_parent[node0 + child] = j
                    node_is_left[node0 + child] = side == 0
                else:
                    leaf_parent[leaf0 + ~child] = j
                    leaf_is_left[leaf0 + ~child] = side == 0
    depth = np.zeros(n_leaves, dtype=np.int64)
    for t in range(n_trees):
        node0, leaf0 = tree_node_start[t], tree_leaf_start[t]
        for leaf in range(leaf0, leaf0 + n_internal[t] + 1):
            node = leaf_parent[leaf]
            while node >= 0:
                depth[leaf] += 1
                node = node_parent[node0 + node]
    leaf_step_start = np.zeros(n_leaves + 1, dtype=np.int64)
    for leaf in range(n_leaves):
        leaf_step_start[leaf + 1] = leaf_step_start[leaf] + depth[leaf]
    n_steps = leaf_step_start[n_leaves]
    step_node = np.zeros(n_steps, dtype=np.int64)
    step_left = np.zeros(n_steps, dtype=np.bool_)
    step_slot = np.zeros(n_steps, dtype=np.int64)
    slot_feature = np.zeros(n_steps, dtype=np.int64)
    slot_zero = np.zeros(n_steps, dtype=np.float64)
    leaf_slot_start = np.zeros(n_leaves + 1, dtype=np.int64)
    leaf_k = np.zeros(n_leaves, dtype=np.int64)
    node_slot = np.zeros(n_nodes, dtype=np.int64)
    n_slots = 0
    for t in range(n_trees):
        node0, leaf0 = tree_node_start[t], tree_leaf_start[t]
        for leaf in range(leaf0, leaf0 + n_internal[t] + 1):
            # Walk up to the root, writing the steps from the end.
            position = leaf_step_start[leaf + 1] - 1
            node = leaf_parent[leaf]
            left = leaf_is_left[leaf]
            while node >= 0:
                step_node[position] = node
                step_left[position] = left
                position -= 1
                left = node_is_left[node0 + node]
                node = node_parent[node0 + node]
            leaf_slot_start[leaf] = n_slots
            k = 0
            for s in range(leaf_step_start[leaf], leaf_step_start[leaf + 1]):
                node = step_node[s]
                g = node0 + node
                child = node_left[g] if step_left[s] else node_right[g]
                cover = node_count[node0 + child] if child >= 0 else leaf_count[leaf0 + ~child]
                fraction = cover / node_count[g]
                slot = -1
                for j in range(k):
                    if slot_feature[n_slots + j] == node_feature[g]:
                        slot = j
                if slot < 0:
                    slot = k
                    slot_feature[n_slots + k] = node_feature[g]
                    slot_zero[n_slots + k] = fraction
                    k += 1
                else:
                    slot_zero[n_slots + slot] = fraction * slot_zero[n_slots + slot]
                step_slot[s] = slot
                node_slot[g] = slot
            leaf_k[leaf] = k
            n_slots += k
    leaf_slot_start[n_leaves] = n_slots
    return (
        leaf_k,
        leaf_step_start,
        leaf_slot_start,
        step_node,
        step_left,
        step_slot,
        slot_feature[:n_slots].copy(),
        slot_zero[:n_slots].copy(),
        node_slot,
    )


def _shapley_weights(max_k: int) -> np.ndarray:
    """``w[k, s] = s! (k − s − 1)! / k!``: the Shapley weight of a coalition of ``s`` among ``k`` players."""
    weights = np.zeros((max_k + 1, max(max_k, 1)), dtype=np.float64)
    for k in range(1, max_k + 1):
        for s in range(k):
            weights[k, s] = 1.0 / (k * math.comb(k - 1, s))
    return weights


# --- kernels ------------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def _fill_tables(
    table, leaves, leaf_table_start, leaf_k, leaf_value, leaf_slot_start, slot_zero, weights, largest
):  # pragma: no cover
    """``table[start + P] = v · H(P) · Π_{j∉P} z_j`` for every pattern ``P`` of met features of ``leaves``.

    Subset recursions give every pattern in O(k): the polynomial ``Π_{j∈P} (1 + z_j t)`` (its
    coefficients are the ``e_m``) from ``P`` less its lowest feature, and the product of the unmet
    shares likewise. The full pattern (every condition met) is never looked up and stays 0.
    """
    poly = np.zeros((1 << largest, largest + 1))
    count = np.zeros(1 << largest, dtype=np.int64)
    product = np.zeros(1 << largest)
    for leaf in leaves:
        k = leaf_k[leaf]
        start = leaf_table_start[leaf]
        z0 = leaf_slot_start[leaf]
        v = leaf_value[leaf]
        full = (1 << k) - 1
        poly[0, 0] = 1.0
        count[0] = 0
        product[0] = 1.0
        for pattern in range(1, full + 1):
            j = 0
            while not (pattern >> j) & 1:
                j += 1
            rest = pattern ^ (1 << j)
            z = slot_zero[z0 + j]
            c = count[rest]
            count[pattern] = c + 1
            poly[pattern, 0] = 1.0
            for m in range(1, c + 1):
                poly[pattern, m] = poly[rest, m] + z * poly[rest, m - 1]
            poly[pattern, c + 1] = z * poly[rest, c]
            product[pattern] = product[rest] * z
        for pattern in range(full):
            c = count[pattern]
            h = 0.0
            for m in range(c + 1):
                h += weights[k, c - m] * poly[pattern, m]
            table[start + pattern] = v * h * product[full ^ pattern]


@njit(inline="always")
def _goes_left(fval, threshold, decision, cat_bits, cat_start, cat_words):  # pragma: no cover
    """LightGBM's ``Tree::Decision`` for one node (numerical or categorical), as it runs on x86-64."""
    if decision & 1:  # categorical: the codes in the node's bitset go left
        # NaN and codes outside int32 convert to INT_MIN (x86 cvttsd2si), i.e. negative: right.
        if not (fval > -1.0 and fval < 2147483648.0):
            return False
        code = int(fval)
        word = code >> 5
        if word >= cat_words:
            return False
        return (cat_bits[cat_start + word] >> np.uint32(code & 31)) & np.uint32(1) == np.uint32(1)
    missing = (decision >> 2) & 3
    if fval != fval:
        if missing != 2:
            fval = 0.0
        else:
            return (decision & 2) != 0
    if missing == 1 and -_ZERO_THRESHOLD <= fval <= _ZERO_THRESHOLD:
        return (decision & 2) != 0
    return fval <= threshold


@njit(inline="always")
def _leaf_direct(
    out, r, met, k, v, s0, slot_feature, slot_zero, slot_one_minus_zero, weights, e, e_without
):  # pragma: no cover
    """One leaf's contributions to row ``r`` from the formula, for leaves without a table."""
    n_met = 0
    e[0] = 1.0
    unmet_zero = 1.0
    for j in range(k):
        z = slot_zero[s0 + j]
        if met[j]:
            n_met += 1
            e[n_met] = 0.0
            for m in range(n_met, 0, -1):
                e[m] += z * e[m - 1]
        else:
            unmet_zero *= z
    if unmet_zero == 0.0:
        return
    unmet_value = 0.0
    if n_met < k:
        h = 0.0
        for m in range(n_met + 1):
            h += weights[k, n_met - m] * e[m]
        unmet_value = v * h * unmet_zero
    for j in range(k):
        if not met[j]:
            out[r, slot_feature[s0 + j]] -= unmet_value
            continue
        # Divide the polynomial by (1 + z t): the same sums without feature j.
        z = slot_zero[s0 + j]
        e_without[0] = 1.0
        h = weights[k, n_met - 1]
        for m in range(1, n_met):
            e_without[m] = e[m] - z * e_without[m - 1]
            h += weights[k, n_met - 1 - m] * e_without[m]
        out[r, slot_feature[s0 + j]] += v * slot_one_minus_zero[s0 + j] * h * unmet_zero


@njit(nogil=True, cache=True)
def _shap_rows(
    X,
    lo,
    hi,
    out,
    block,
    tree_node_start,
    tree_n_internal,
    tree_leaf_start,
    tree_masked,
    node_feature,
    node_threshold,
    node_decision,
    node_cat_start,
    node_cat_words,
    node_slot,
    node_left_at,
    node_right_at,
    cat_bits,
    leaf_value,
    leaf_k,
    leaf_step_start,
    leaf_slot_start,
    leaf_table_start,
    step_node,
    step_left,
    step_slot,
    slot_feature,
    slot_zero,
    slot_one_minus_zero,
    slot_met_ratio,
    table,
    weights,
    max_internal,
    max_k,
):  # pragma: no cover
    """Add the TreeSHAP values of rows ``lo:hi`` of ``X`` to ``out`` (same rows, one column per feature).

    The hot loops index with unsigned integers: numba then skips its negative-index wraparound,
    which otherwise costs about 40 % of the time.
    """
    one = np.uint64(1)
    zero = np.uint64(0)
    size = max(max_internal, 1)
    unmet = np.zeros(2 * size + 1, dtype=np.uint64)  # failed-feature mask per node, then per leaf
    left = np.zeros(size, dtype=np.bool_)
    met = np.zeros(max(max_k, 1), dtype=np.bool_)
    e = np.zeros(max_k + 1)
    e_without = np.zeros(max_k + 1)
    n_columns = np.uint64(X.shape[1])
    n_features = np.uint64(out.shape[1])
    x_flat = X.reshape(-1)
    out_flat = out.reshape(-1)
    for first in range(lo, hi, block):
        last = min(first + block, hi)
        for t in range(len(tree_n_internal)):
            if tree_n_internal[t] == 0:
                continue
            n_internal = np.uint64(tree_n_internal[t])
            node0 = np.uint64(tree_node_start[t])
            leaf0 = np.uint64(tree_leaf_start[t])
            masked = tree_masked[t]
            for r in range(first, last):
                x0 = np.uint64(r) * n_columns
                row = np.uint64(r) * n_features
                if masked:
                    # Parents come before their children in LightGBM's node order, so one pass
                    # carries the mask of failed features from the root to every leaf.
                    unmet[0] = zero
                    for j in range(n_internal):
                        g = node0 + j
                        goes = _goes_left(
                            x_flat[x0 + np.uint64(node_feature[g])],
                            node_threshold[g],
                            node_decision[g],
                            cat_bits,
                            node_cat_start[g],
                            node_cat_words[g],
                        )
                        bit = one << np.uint64(node_slot[g])
                        here = unmet[j]
                        unmet[np.uint64(node_left_at[g])] = here | (zero if goes else bit)
                        unmet[np.uint64(node_right_at[g])] = here | (bit if goes else zero)
                else:
                    for j in range(n_internal):
                        g = node0 + j
                        left[j] = _goes_left(
                            x_flat[x0 + np.uint64(node_feature[g])],
                            node_threshold[g],
                            node_decision[g],
                            cat_bits,
                            node_cat_start[g],
                            node_cat_words[g],
                        )
                for at in range(n_internal + one):
                    leaf = leaf0 + at
                    k = np.uint64(leaf_k[leaf])
                    s0 = np.uint64(leaf_slot_start[leaf])
                    start = leaf_table_start[leaf]
                    if start >= 0:
                        base = np.uint64(start)
                        pattern = ((one << k) - one) ^ unmet[n_internal + at]
                        unmet_value = table[base + pattern]
                        for j in range(k):
                            s = s0 + j
                            is_met = (pattern >> j) & one
                            with_j = slot_met_ratio[s] * table[base + (pattern ^ (one << j))]
                            out_flat[row + np.uint64(slot_feature[s])] += is_met * with_j - (one - is_met) * unmet_value
                        continue
                    if masked:
                        mask = unmet[n_internal + at]
                        for j in range(k):
                            met[j] = not ((mask >> j) & one)
                    else:
                        for j in range(k):
                            met[j] = True
                        for s in range(leaf_step_start[leaf], leaf_step_start[leaf + one]):
                            if left[step_node[s]] != step_left[s]:
                                met[step_slot[s]] = False
                    _leaf_direct(
                        out,
                        r,
                        met,
                        np.int64(k),
                        leaf_value[leaf],
                        np.int64(s0),
                        slot_feature,
                        slot_zero,
                        slot_one_minus_zero,
                        weights,
                        e,
                        e_without,
                    )


# --- public API ---------------------------------------------------------------------------------------


class TreeShap:
    """Exact path-dependent TreeSHAP for a LightGBM booster (binary or single-output regression).

    Args:
        booster: a trained ``lightgbm.Booster`` (``LGBMModel.booster_`` for the scikit-learn API).
        num_iteration: boosting rounds to explain, as in ``Booster.predict``: ``None`` uses the best
            iteration when early stopping recorded one and all rounds otherwise; ``<= 0`` all rounds.
        n_jobs: threads (``-1``: one per core). The values do not depend on it.
        max_table_bits: leaves with at most this many distinct features on their path (at most 20)
            get a table of ``2**k`` precomputed entries; deeper leaves are computed per sample (slower,
            same values).
        max_table_mb: memory cap on all tables together; leaves beyond it are computed per sample.

    Attributes: ``feature_names_`` (the booster's), ``expected_value_`` (the base value: the mean raw
    output over the training rows, ``pred_contrib``'s last column), ``n_trees_``,
    ``max_path_features_`` (the most distinct features on one leaf's path), ``tabled_leaf_share_``
    (share of the leaves with a table) and ``table_mb_`` (their memory).

    The booster is parsed once, here; keep the object to explain several batches.
    """

    def __init__(
        self,
        booster: lgb.Booster,
        num_iteration: int | None = None,
        n_jobs: int = -1,
        max_table_bits: int = 16,
        max_table_mb: float = 256.0,
    ) -> None:
        self.booster = booster
        self.num_iteration = num_iteration
        self.n_jobs = n_jobs
        self.max_table_bits = max_table_bits
        self.max_table_mb = max_table_mb
        model = booster.model_to_string(num_iteration=-1)
        header, trees = _parse_model(model)
        if int(header.get("num_class", "1")) != 1 or int(header.get("num_tree_per_iteration", "1")) != 1:
            raise ValueError("TreeShap explains single-output models (binary, regression); this one is multiclass")
        if "average_output" in model.split("\nTree=", 1)[0].splitlines():
            raise ValueError("TreeShap does not support random-forest boosters (boosting=rf)")
        rounds = num_iteration if num_iteration is not None else (booster.best_iteration or 0)
        if rounds > 0:
            trees = trees[:rounds]
        self.n_trees_ = len(trees)
        self.n_features_ = int(header["max_feature_idx"]) + 1
        self.feature_names_ = list(booster.feature_name())
        self.pandas_categorical_ = booster.pandas_categorical
        self.expected_value_ = 0.0
        for tree in trees:
            self.expected_value_ += tree.expected_value()
        threads = _threads(n_jobs)
        self._ensemble = _flatten(trees, max(0, min(int(max_table_bits), 20)), int(max_table_mb * 2**20), threads)
        with_path = self._ensemble.leaf_k > 0
        self.max_path_features_ = self._ensemble.max_k
        self.tabled_leaf_share_ = (
            float(np.mean(self._ensemble.leaf_table_start[with_path] >= 0)) if with_path.any() else 1.0
        )
        self.table_mb_ = self._ensemble.table.nbytes / 2**20

    def shap_values(self, X: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, float]:
        """Contributions on the raw scale (n × features, float64) and the base value.

        ``base + values.sum(axis=1)`` is the raw model output (log-odds for binary, the log of the
        mean for tweedie). ``X`` is what the booster predicts on: a DataFrame with its columns
        (pandas categoricals are coded as LightGBM codes them) or a float array.
        """
        matrix = self._matrix(X)
        values = np.zeros((matrix.shape[0], self.n_features_), dtype=np.float64)
        n = matrix.shape[0]
        threads = max(1, min(_threads(self.n_jobs), -(-n // _ROW_BLOCK)))
        if n == 0:
            return values, float(self.expected_value_)
        bounds = np.linspace(0, n, threads * 4 + 1 if threads > 1 else 2).astype(int)
        args = self._ensemble.kernel_args()

        def run(lo: int, hi: int) -> None:
            _shap_rows(matrix, lo, hi, values, _ROW_BLOCK, *args)

        if threads == 1:
            run(0, n)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for future in [pool.submit(run, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]:
                    future.result()
        return values, float(self.expected_value_)

    def contrib(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Contributions and base value in ``pred_contrib``'s layout: n × (features + 1), base last."""
        values, base = self.shap_values(X)
        return np.column_stack([values, np.full(len(values), base)])

    def _matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """``X`` as the float64 matrix LightGBM predicts on (categoricals as codes, missing as NaN)."""
        if not isinstance(X, pd.DataFrame):
            matrix = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
            if matrix.ndim != 2 or matrix.shape[1] != self.n_features_:
                raise ValueError(
                    f"TreeShap: expected a 2-d array with {self.n_features_} columns, got shape {matrix.shape}"
                )
            return matrix
        X = self._aligned(X)
        matrix = np.empty((len(X), X.shape[1]), dtype=np.float64)
        categorical = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
        training = self.pandas_categorical_ or []
        if training and len(training) != len(categorical):
            raise ValueError(
                f"TreeShap: the booster was trained with {len(training)} categorical column(s), X has "
                f"{len(categorical)} ({', '.join(map(str, categorical)) or 'none'})"
            )
        for position, column in enumerate(X.columns):
            series = X[column]
            if column in categorical:
                if training:
                    categories = training[categorical.index(column)]
                    if list(series.cat.categories) != list(categories):
                        series = series.cat.set_categories(categories)
                codes = series.cat.codes.to_numpy()
                matrix[:, position] = np.where(codes < 0, np.nan, codes)
            else:
                if not (pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype)):
                    raise ValueError(f"TreeShap: column {column!r} has dtype {series.dtype}; expected numbers")
                matrix[:, position] = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return matrix

    def _aligned(self, X: pd.DataFrame) -> pd.DataFrame:
        """The booster's feature columns of ``X`` in the booster's order (LightGBM's names have ``_`` for spaces)."""
        names = [str(c).replace(" ", "_") for c in X.columns]
        if names == self.feature_names_:
            return X
        position = {name: i for i, name in enumerate(names)}
        if len(position) == len(names) and all(name in position for name in self.feature_names_):
            return X.iloc[:, [position[name] for name in self.feature_names_]]
        if len(names) == self.n_features_ and self.feature_names_ == [f"Column_{i}" for i in range(self.n_features_)]:
            return X  # trained on an unnamed array: columns are taken by position, as LightGBM does
        absent = [name for name in self.feature_names_ if name not in position]
        raise ValueError(
            f"TreeShap: X lacks the booster's feature(s) {', '.join(absent[:5]) or '(none; duplicate columns)'}"
        )


def _threads(n_jobs: int) -> int:
    """Threads for ``n_jobs`` (``-1``: every core), never more than this process's thread budget (a scoring
    worker's share of the cores: :func:`crmscore.parallel.thread_budget`)."""
    budget = thread_budget()
    return min(n_jobs, budget) if n_jobs > 0 else budget


class TreeShapCache:
    """Mixin of the models: one :class:`TreeShap` per booster, built on first use and never pickled.

    The explainers are derived from the boosters, so they are left out of the pickled model (and so of
    the model logged to MLflow) and rebuilt after loading.
    """

    def _tree_shap(self, key: Any, booster: lgb.Booster, num_iteration: int | None = None) -> TreeShap:
        cache = self.__dict__.setdefault("_explainers", {})
        if key not in cache:
            cache[key] = TreeShap(booster, num_iteration=num_iteration, n_jobs=getattr(self, "n_jobs", -1))
        return cache[key]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_explainers", None)
        return state


def tree_shap(booster: lgb.Booster, X: pd.DataFrame | np.ndarray, num_iteration: int | None = None) -> np.ndarray:
    """TreeSHAP values of ``booster`` on ``X`` in ``pred_contrib``'s layout (n × (features + 1), base last).

    A shortcut for ``TreeShap(booster, num_iteration).contrib(X)``; keep a :class:`TreeShap` when
    explaining several batches with one booster, as building it precomputes the leaf tables.
    """
    return TreeShap(booster, num_iteration=num_iteration).contrib(X)


# --- reasons ------------------------------------------------------------------------------------------


def _format_number(value: float) -> str:
    if np.isnan(value):
        return "missing"
    if not np.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value)}"
    return f"{value:.0f}" if 1e4 <= abs(value) < 1e15 else f"{value:.4g}"


def _value_text(column: pd.Series, rows: np.ndarray) -> np.ndarray:
    """The values of ``column`` at ``rows`` as short text ("missing" where there is none)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()[rows]
        labels = np.array([str(c) for c in column.cat.categories] + ["missing"], dtype=object)
        return labels[np.where(codes < 0, len(labels) - 1, codes)]
    if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)[rows]
        unique, inverse = np.unique(values, return_inverse=True)
        return np.array([_format_number(v) for v in unique], dtype=object)[inverse]
    values = column.to_numpy(dtype=object)[rows]
    return np.array(["missing" if pd.isna(v) else str(v) for v in values], dtype=object)


# How the reasons of a customer are chosen (``top_reasons(rank_by=...)``).
_RANK_BY = ("direction", "increase", "absolute")
# Changes of the expected spend at or above this many percent are written as whole numbers.
_WHOLE_PERCENT_FROM = 10.0
# Amounts are capped here before rounding to integers (a log-spend contribution of 35 is already 1.6e17 %).
_LARGEST_AMOUNT = 1e15


def _amount_text(amount: np.ndarray, whole_from: float = math.inf) -> np.ndarray:
    """Sizes (``|amount|``, in points or percent) as text: one decimal, whole numbers (``1,250``) from
    ``whole_from`` on, and ``< 0.1`` for one that rounds to zero. Formats each distinct rounded size once."""
    amount = np.nan_to_num(np.abs(np.asarray(amount, dtype=np.float64)), nan=0.0, posinf=_LARGEST_AMOUNT)
    amount = np.minimum(amount, _LARGEST_AMOUNT)
    text = np.empty(len(amount), dtype=object)
    whole = np.rint(amount * 10) >= whole_from * 10  # on the rounded size: 9.97 is "10", not "10.0"
    for at, per_unit in ((~whole, 10), (whole, 1)):
        if not at.any():
            continue
        units, inverse = np.unique(np.rint(amount[at] * per_unit).astype(np.int64), return_inverse=True)
        if per_unit == 10:
            labels = [f"{u // 10:,}.{u % 10}" if u else "< 0.1" for u in units.tolist()]
        else:
            labels = [f"{u:,}" for u in units.tolist()]
        text[at] = np.array(labels, dtype=object)[inverse.reshape(-1)]
    return text


def top_reasons(
    values: np.ndarray,
    X: pd.DataFrame,
    feature_names: Sequence[str] | None = None,
    k: int = 3,
    model: str = "churn",
    base: float | None = None,
    raw: np.ndarray | None = None,
    kind: str | None = None,
    rank_by: str | None = None,
    trend_window_days: int = 90,
    base_rate: float | None = None,
) -> pd.DataFrame:
    """The ``k`` strongest reasons per customer, one row each (long format, columns :data:`REASON_COLUMNS`).

    Args:
        values: contributions (n × features) from :meth:`TreeShap.shap_values` or a model's
            ``shap_values``, in the row order of ``X``.
        X: the features of the same customers (index: customer ids); the reasons quote their values.
        feature_names: the feature of each column of ``values``; default the columns of ``X``.
        k: reasons per customer at most.
        model: the label written in the ``model`` column (``churn``, ``clv``, …).
        base, raw: the base value (the model's mean raw output), or the raw output per customer (default
            ``base + values.sum(1)``); ``log_odds`` reasons need one of them for the probability change,
            and quote ``base_rate`` (default ``sigmoid(base)``) as the base rate.
        kind: ``log_odds`` (churn) or ``log_spend`` (CLV with a log link); default from ``model``
            (``churn`` → ``log_odds``, otherwise ``log_spend``).
        rank_by: which features become a customer's reasons.

            * ``direction`` (default for ``log_odds``) follows the customer: one whose raw output is
              above the base value (churn risk above the base rate) gets the features that raise it
              most — the reasons of risk a retention team acts on; one below it gets the features that
              lower it most — the reasons the customer is safe. The side is ``raw − base`` when both
              are given, else the sum of the contributions (equal for exact SHAP values); a customer
              exactly at the base value counts as above.
            * ``increase`` lists the features that raise the output most (largest positive
              contribution first), whatever the customer's score.
            * ``absolute`` (default for ``log_spend``) lists the largest ``|contribution|`` either way.

            ``direction`` and ``increase`` may list fewer than ``k`` reasons (only contributions of the
            chosen sign count). Zero contributions are never reasons; ties go to the feature that comes
            first in ``feature_names``.
        trend_window_days: the trend window the feature descriptions quote.
        base_rate: the churn rate the churn texts quote (e.g. the training data's share of churners);
            default ``sigmoid(base)``, the model's mean log-odds as a probability.

    Returns:
        DataFrame sorted by customer (``X``'s order) and rank (1 = strongest) with ``customer_id``,
        ``model``, ``rank``, ``feature``, ``value`` (the feature's value as text — numbers with up to
        four significant digits, category labels, ``missing`` — so that one column holds numeric and
        categorical features alike), ``contribution`` (on the raw scale), ``probability_change``
        (``log_odds`` only: ``sigmoid(raw) − sigmoid(raw − contribution)``, the change in the
        uncalibrated probability this feature makes given the others), ``relative_spend_change``
        (``log_spend`` only: ``exp(contribution) − 1``, e.g. 0.25 = this feature raises the expected
        spend by 25 %) and ``text``, which says which way the feature moves the output and how much:

        * churn: ``days since the last purchase = 210: raises churn risk by 12.3 points (base rate
          26.5 %)`` — percentage points of ``probability_change`` with one decimal (``< 0.1 points``
          when smaller), the base rate ``base_rate`` (default ``sigmoid(base)``) when either is given;
        * CLV: ``purchases, all time = 12: raises expected spend by 25 %`` / ``… lowers expected spend
          by 40 %`` — ``relative_spend_change`` in percent (whole numbers from 10 %, one decimal below).
    """
    kind = kind or ("log_odds" if model == "churn" else "log_spend")
    if kind not in ("log_odds", "log_spend"):
        raise ValueError(f"top_reasons: unknown kind {kind!r} (log_odds or log_spend)")
    rank_by = rank_by or ("direction" if kind == "log_odds" else "absolute")
    if rank_by not in _RANK_BY:
        raise ValueError(f"top_reasons: unknown rank_by {rank_by!r} ({', '.join(_RANK_BY[:-1])} or {_RANK_BY[-1]})")
    if k < 1:
        raise ValueError(f"top_reasons: k must be at least 1, got {k}")
    values = np.asarray(values, dtype=np.float64)
    names = list(X.columns) if feature_names is None else list(feature_names)
    if values.ndim != 2 or values.shape != (len(X), len(names)):
        raise ValueError(
            f"top_reasons: values have shape {values.shape}; expected ({len(X)}, {len(names)}) "
            "(one row per customer of X, one column per feature)"
        )
    absent = [name for name in names if name not in X.columns]
    if absent:
        raise ValueError(f"top_reasons: X lacks the feature column(s) {', '.join(map(str, absent[:5]))}")
    if raw is not None:
        raw = np.asarray(raw, dtype=np.float64).reshape(-1)
        if len(raw) != len(values):
            raise ValueError(f"top_reasons: raw has {len(raw)} values for {len(values)} customers")
    if kind == "log_odds" and raw is None and base is None:
        raise ValueError("top_reasons: log_odds reasons need base or raw to compute the probability change")

    if rank_by == "absolute":
        score = np.abs(values)
    elif rank_by == "increase":
        score = values
    else:
        above = (raw - base) if raw is not None and base is not None else values.sum(axis=1)
        score = np.where((above >= 0)[:, None], values, -values)
    # A stable sort keeps ties in feature order, so the result is deterministic.
    order = np.argsort(-score, axis=1, kind="stable")[:, :k]
    # Only contributions of the chosen sign count (for ``absolute``: every non-zero one).
    rows, ranks = np.nonzero(np.take_along_axis(score, order, axis=1) > 0)
    features = order[rows, ranks]
    contribution = values[rows, features]

    value_text = np.empty(len(rows), dtype=object)
    for position in np.unique(features):
        at = features == position
        value_text[at] = _value_text(X[names[position]], rows[at])
    descriptions = np.array([describe(str(name), trend_window_days) for name in names], dtype=object)
    if kind == "log_odds":
        if raw is None:
            raw = base + values.sum(axis=1)
        probability_change = _sigmoid(raw[rows]) - _sigmoid(raw[rows] - contribution)
        spend_change = np.full(len(rows), np.nan)
        effect = np.where(contribution > 0, "raises churn risk by ", "lowers churn risk by ")
        amount = _amount_text(100.0 * probability_change)
        if base_rate is None and base is not None:
            base_rate = float(_sigmoid(np.array([float(base)]))[0])
        rate = _amount_text(100.0 * np.array([base_rate]))[0] if base_rate is not None else None
        unit = " points" if rate is None else f" points (base rate {rate} %)"
    else:
        probability_change = np.full(len(rows), np.nan)
        spend_change = np.expm1(contribution)
        effect = np.where(contribution > 0, "raises expected spend by ", "lowers expected spend by ")
        amount = _amount_text(100.0 * spend_change, whole_from=_WHOLE_PERCENT_FROM)
        unit = " %"
    text = [
        f"{d} = {v}: {e}{a}{unit}"
        for d, v, e, a in zip(descriptions[features], value_text, effect, amount, strict=True)
    ]
    return pd.DataFrame(
        {
            "customer_id": X.index.to_numpy()[rows],
            "model": model,
            "rank": (ranks + 1).astype(np.int64),
            "feature": np.array([str(name) for name in names], dtype=object)[features],
            "value": value_text,
            "contribution": contribution,
            "probability_change": probability_change,
            "relative_spend_change": spend_change,
            "text": text,
        },
        columns=REASON_COLUMNS,
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))
