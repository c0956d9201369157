"""Tables of the statistics domain: the facts, the job's progress, departments' grants and their
privacy budgets.

No personal data: a fact holds counts and a HyperLogLog sketch of keyed pseudonyms.  A fact's
``id`` is its grain, bucket and cell, so a re-run replaces a bucket's facts (delete, then insert,
in one transaction) and can never count them twice.
"""

from __future__ import annotations

from piccolo.columns import BigInt, Bytea, Text, Varchar
from piccolo.table import Table


class StatisticsFact(Table, tablename="statistics_fact"):
    """One cell of one hour (``grain`` ``h``, ``bucket`` the UTC hour's first second) or one day
    (``d``, ``bucket`` 00:00 CST of ``day``)."""

    id = Varchar(length=200, primary_key=True)  # grain:bucket:cell key
    grain = Varchar(length=1, index=True)
    bucket = BigInt(index=True)
    day = Varchar(length=10, index=True)  # the CST day the bucket lies in
    region = Varchar(length=6, index=True)
    scenario = Varchar(length=16)
    medium = Varchar(length=16)
    channel = Varchar(length=40)
    result = Varchar(length=8)
    cross_province = Varchar(length=8)
    events = BigInt(default=0)
    capped = BigInt(default=0)  # events counting at most ``cap`` per card-hour
    cards = BigInt(default=0)  # the sketch's estimate
    sketch = Bytea()
    built_at = BigInt(default=0)


class StatisticsState(Table, tablename="statistics_state"):
    """The aggregation job's progress: ``name`` -> ``value`` (``through``: hours before this
    instant are done; ``terminal_record``: the last uploaded record id seen)."""

    name = Varchar(length=32, primary_key=True)
    value = BigInt(default=0)


class StatisticsGrant(Table, tablename="statistics_grant"):
    """Which 一卡通 fields (领域) a department filing may query; its regions are its filing's."""

    department = Varchar(length=40, primary_key=True)
    fields = Text(default=",")
    granted_by = Varchar(length=64, default="")
    granted_at = BigInt(default=0)


class StatisticsBudget(Table, tablename="statistics_budget"):
    """The privacy budget a department has spent on one month of data, in millionths of ε."""

    id = Varchar(length=56, primary_key=True)  # department:YYYY-MM
    department = Varchar(length=40, index=True)
    month = Varchar(length=7)
    spent_micro = BigInt(default=0)
    queries = BigInt(default=0)
    updated_at = BigInt(default=0)


TABLES: list[type[Table]] = [StatisticsFact, StatisticsState, StatisticsGrant, StatisticsBudget]
