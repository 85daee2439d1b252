"""Drives hal0 with the official openai Python client; prints one JSON object of results.

usage: client.py BASE_URL WAV_PATH
"""
import json
import sys

from openai import OpenAI

base, wav = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
out = {}

chat = client.chat.completions.create(
    model="primary", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
)
out["chat"] = chat.choices[0].message.content

chunks = []
for event in client.chat.completions.create(
    model="primary",
    messages=[{"role": "user", "content": "Count to three."}],
    max_tokens=8,
    stream=True,
):
    if event.choices and event.choices[0].delta.content:
        chunks.append(event.choices[0].delta.content)
out["stream_chunks"] = len(chunks)
out["stream_text"] = "".join(chunks)

emb = client.embeddings.create(model="embed", input=["hello world", "goodbye"])
out["embedding_count"] = len(emb.data)
out["embedding_dim"] = len(emb.data[0].embedding)

with open(wav, "rb") as f:
    tr = client.audio.transcriptions.create(model="whisper-1", file=f)
out["transcript"] = tr.text

speech = client.audio.speech.create(
    model="tts-1", voice="alloy", input="Hello world.", response_format="wav"
)
audio = speech.read()
out["speech_bytes"] = len(audio)
out["speech_riff"] = audio[:4].decode("latin-1")

models = client.models.list()
out["models"] = sorted(m.id for m in models.data)

print(json.dumps(out))
