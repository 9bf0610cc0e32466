"""Evidence suites: S-NIAH (``niah``), BABILong-style bAbI (``babilong``) and long-term
forecasting (``forecasting``). Submodules are imported on demand (none is imported here)."""
