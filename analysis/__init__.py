"""Analysis: pure functions on arrays and tables (electrochemistry and tomography)."""
