"""`make` checks this first: clear instructions for what cannot be installed by pip."""

import shutil
import subprocess
import sys

from local.broker import BrokerError, mosquitto_path
from local.emulators import EmulatorError, check_prerequisites


def missing_components() -> list:
    """The emulator components gcloud lacks (they ship as separate components/packages)."""
    missing = []
    for component, args in (
        ("pubsub-emulator", ["beta", "emulators", "pubsub", "env-init"]),
        ("cloud-firestore-emulator", ["emulators", "firestore", "--help"]),
    ):
        result = subprocess.run(
            ["gcloud", *args, "--quiet"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120
        )
        if "not installed" in (result.stderr + result.stdout).lower():
            missing.append(component)
    return missing


def main() -> int:
    try:
        check_prerequisites()
        broker = mosquitto_path()
    except (EmulatorError, BrokerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    missing = missing_components()
    if missing:
        print(
            "error: gcloud lacks the emulator components " + ", ".join(missing) + ".\n"
            "  With the gcloud installer:  gcloud components install " + " ".join(missing) + "\n"
            "  With apt (Google's repo):   apt-get install google-cloud-cli-pubsub-emulator "
            "google-cloud-cli-firestore-emulator",
            file=sys.stderr,
        )
        return 1
    print(
        f"prerequisites ok: gcloud at {shutil.which('gcloud')}, java at {shutil.which('java')}, mosquitto at {broker}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
