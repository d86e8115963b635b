"""What the agent measures: latency, memory, accuracy; power and thermal report their absence honestly."""
