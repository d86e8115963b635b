from device_agent.cli import run

run()
