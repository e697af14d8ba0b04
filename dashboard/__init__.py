"""The Streamlit dashboard: reads the score store only."""
