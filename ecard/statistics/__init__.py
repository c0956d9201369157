"""用卡全过程数据分析: use records turned into hourly and daily facts, released under k-suppression
and, for departments, differential privacy (``docs/statistics.md``)."""
