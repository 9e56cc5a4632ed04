"""``summarize``: per point, the mean of each metric over replications and its confidence interval.

For a metric ``m`` observed in ``n`` replications with sample mean ``x̄`` and sample standard
deviation ``s`` (``ddof=1``), the interval is Student's t: ``x̄ ± t_{(1+c)/2, n-1} · s / √n``
(``scipy.stats.t``). It assumes the replications are independent draws of a roughly normal
quantity - counts over many requests usually are. With one replication the standard deviation
and the interval are NaN; with a constant metric the interval is the single value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .sweep import META_COLUMNS

__all__ = ["ci_name", "parameter_columns", "summarize"]


def ci_name(confidence: float) -> str:
    """The column infix of a confidence level: ``0.95 -> "ci95"``, ``0.9 -> "ci90"``."""
    return f"ci{100 * confidence:g}"


def parameter_columns(df: pd.DataFrame) -> list[str]:
    """The parameter columns of a sweep's table: from ``df.attrs``, else the columns between
    ``point`` and ``replication`` (so a table read back from ``runs.csv`` works too)."""
    names = df.attrs.get("parameters")
    if names is not None:
        return list(names)
    cols = list(df.columns)
    if "point" in cols and "replication" in cols:
        return cols[cols.index("point") + 1 : cols.index("replication")]
    raise ValueError(
        "cannot tell the parameter columns of this table: pass by=[...] "
        "(it has neither df.attrs['parameters'] nor point/replication columns)"
    )


def summarize(
    df: pd.DataFrame, by: Sequence[str] | None = None, confidence: float = 0.95
) -> pd.DataFrame:
    """One row per point: ``replications``, then for each numeric metric ``<m>_mean``,
    ``<m>_std``, ``<m>_ci95_low``, ``<m>_ci95_high`` (the infix follows ``confidence``).

    ``df`` is a table from :func:`~ratesim.experiments.sweep` (or one read back from its CSV or
    Parquet file). ``by``: the columns that identify a point (default: ``point`` and the
    parameter columns).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    from scipy import stats

    keys = list(by) if by is not None else ["point", *parameter_columns(df)]
    keys = [k for k in keys if k in df.columns] if by is None else keys
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise ValueError(f"by names columns the table does not have: {missing}")
    skip = set(keys) | set(META_COLUMNS) | {"point"}
    metrics = [
        c
        for c in df.columns
        if c not in skip
        and (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))
    ]
    values = df[metrics].astype(float)
    # no keys: the whole table is one point
    group_by = [df[k] for k in keys] if keys else [pd.Series(0, index=df.index, name="_all")]
    grouped = values.groupby(group_by, sort=True, dropna=False)
    mean, std, n = grouped.mean(), grouped.std(), grouped.size()
    t = stats.t.ppf((1 + confidence) / 2, np.maximum(n.to_numpy() - 1, 1))
    half = std.mul(t, axis=0).div(np.sqrt(n.to_numpy()), axis=0)
    half.loc[n.to_numpy() <= 1, :] = np.nan  # one replication: no interval
    ci = ci_name(confidence)
    m, h = mean.to_numpy(), half.to_numpy()
    # one block of four columns per metric, built at once (a column at a time is slow)
    blocks = np.stack([m, std.to_numpy(), m - h, m + h], axis=2).reshape(len(mean), -1)
    suffixes = ("mean", "std", f"{ci}_low", f"{ci}_high")
    names = [f"{metric}_{suffix}" for metric in metrics for suffix in suffixes]
    out = pd.DataFrame(blocks, columns=names, index=mean.index)
    out.insert(0, "replications", n.to_numpy())
    return out.reset_index() if keys else out.reset_index(drop=True)
