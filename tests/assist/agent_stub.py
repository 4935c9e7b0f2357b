"""A stand-in agent for the runner's tests: JSON lines on stdin/stdout, as assist.agent.command speaks.

"movie time" -> turn on the coffee plug; "garage" -> an entity that does not exist; "slow" -> no
answer in time; "crash" -> exits (the runner starts it again); anything else -> no intent.
"""

import json
import sys
import time

for line in sys.stdin:
    request = json.loads(line)
    text = request["text"]
    names = [e["name"] for e in request["home"]["entities"]]
    if "crash" in text:
        sys.exit(3)
    if "slow" in text:
        time.sleep(5)
    if "movie" in text and "Coffee plug" in names:
        intent = {"name": "HassTurnOn", "slots": {"name": "Coffee plug"}}
    elif "garage" in text:
        intent = {"name": "HassTurnOn", "slots": {"name": "Garage Door"}}
    elif "topic" in text:
        intent = {"name": "HassTurnOn", "slots": {"name": "x/#"}}
    else:
        intent = None
    print(json.dumps({"id": request["id"], "intent": intent}), flush=True)
