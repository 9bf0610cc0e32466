"""Long-term forecasting on ETTh1/ETTh2: data (``data``), models (``models``), harness (``harness``)."""
