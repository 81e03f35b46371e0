"""The gatekit dashboard: a Streamlit app over the action store (`gatekit dashboard --db PATH`)."""
