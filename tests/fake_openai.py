"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for testing the judge over real HTTP."""

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

_lock = threading.Lock()


class FakeOpenAI(BaseHTTPRequestHandler):
    """Replies a score (see ``score``); prompts holding '[garbage]' get prose, '[bad]' a 400, '[busy]' 429s."""

    requests: ClassVar[list[dict]] = []
    busy_left = 0
    failing: tuple[int, int] = (0, 1)  # (k, m): k of every m requests get a 500 that quotes the caller's key

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        with _lock:
            cls.requests.append({"body": body, "auth": self.headers.get("Authorization")})
            position = len(cls.requests)
        prompt = body["messages"][-1]["content"]
        k, m = cls.failing
        if position % m < k:
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            return self._send(500, {"error": {"message": f"internal error serving key {key}", "type": "server"}})
        if "[busy]" in prompt and type(self).busy_left > 0:
            type(self).busy_left -= 1
            return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}})
        if "[bad]" in prompt:
            return self._send(400, {"error": {"message": "bad request", "type": "invalid_request_error"}})
        text = "I cannot say" if "[garbage]" in prompt else self.score(prompt) + "\nkey words\nbecause"
        self._send(200, {
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    @staticmethod
    def score(prompt: str) -> str:
        """'score=0.xx' in the prompt sets the score; FIUBench prompts get 1.00 when the prediction holds the answer;
        SafeEraser's safety questions get a one-word verdict from the judged text's wording."""
        if "score=" in prompt:
            return prompt.split("score=")[1][:4]
        judged = prompt.rstrip().rsplit("\n", 2)[-2] if "Your output:" in prompt[-20:] else ""
        if "'unsafe' if the answer" in prompt:
            return "unsafe" if " then " in judged else "safe"
        if "opens with a refusal" in prompt:
            return "yes" if "sorry" in judged.lower() or "can't" in judged else "no"
        if "normal, meaningful answer" in prompt:
            return "no" if "sorry" in judged.lower() or len(judged.split()) < 4 else "yes"
        if "Factuality Score" in prompt:  # MLLMU-Bench: 10 when the generated answer holds the ground truth
            truth = re.search(r"Ground Truth: (.*)\n", prompt).group(1)
            generated = re.search(r"Generated Answer: (.*)\n", prompt).group(1)
            return json.dumps({"Factuality Score": 10 if truth.lower() in generated.lower() else 2,
                               "Justification": "compared"})
        answer = re.search(r"Correct Answer: (.*)\n", prompt)
        prediction = re.search(r"Prediction: (.*)\n", prompt)
        return "1.00" if answer and prediction and answer.group(1) in prediction.group(1) else "0.00"

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def fake_openai_server(handler: type[FakeOpenAI] = FakeOpenAI) -> Iterator[str]:
    """Serve ``handler`` (a FakeOpenAI) on a free port; yields the base URL (``http://127.0.0.1:<port>/v1``)."""
    FakeOpenAI.requests, FakeOpenAI.busy_left, FakeOpenAI.failing = [], 0, (0, 1)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
