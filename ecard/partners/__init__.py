"""The application catalogue (应用目录备案): one filing per partner system, its workflow and its
credentials (``docs/partners.md``)."""
