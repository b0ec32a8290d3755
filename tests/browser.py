"""A real browser for the page tests: headless Chromium driven by chromedriver over the W3C
WebDriver protocol (plain HTTP and JSON, so the tests need no Python package for it)."""
import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

# as the machines here run it: no sandbox as root, and no background connections to a network it cannot reach
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def missing():
    """Why no browser can run here, or None."""
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        return "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    return None


class Browser:
    def __init__(self, window="1300,1000"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = "http://127.0.0.1:%d" % port
        self.driver = subprocess.Popen([shutil.which("chromedriver"), "--port=%d" % port],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.profile = tempfile.mkdtemp()
        deadline = time.time() + 30
        while True:
            try:
                if self._call("GET", "/status")["value"]["ready"]:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                self.driver.kill()
                raise RuntimeError("chromedriver did not start")
            time.sleep(0.1)
        options = {"binary": shutil.which("chromium"), "args": CHROMIUM_FLAGS + ["--window-size=" + window,
                                                                          "--user-data-dir=" + self.profile]}
        capabilities = {"browserName": "chrome", "goog:chromeOptions": options,
                        "goog:loggingPrefs": {"browser": "ALL"}}
        self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})["value"]["sessionId"]

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())

    def _session(self, method, path, body=None):
        return self._call(method, "/session/%s%s" % (self.session, path), body)["value"]

    def open(self, url):
        self._session("POST", "/url", {"url": url})

    def run(self, script, *args):
        """Runs JavaScript in the page (the body of a function) and returns its value."""
        return self._session("POST", "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(self._session("GET", "/screenshot")))

    def console_errors(self):
        """What the page logged as errors (SEVERE) to the browser's console."""
        entries = self._session("POST", "/se/log", {"type": "browser"})
        return [e["message"] for e in entries if e.get("level") == "SEVERE"]

    def close(self):
        try:
            self._call("DELETE", "/session/%s" % self.session)
        finally:
            self.driver.kill()
            self.driver.wait()
            shutil.rmtree(self.profile, ignore_errors=True)
