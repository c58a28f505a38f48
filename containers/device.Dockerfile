# The edgeq device agent on a Jetson, on NVIDIA's L4T TensorRT base image (NGC nvcr.io/nvidia/l4t-tensorrt).
# Pick the tag that matches the device's TensorRT (an engine is tied to one TensorRT version):
# r8.5.2-runtime for JetPack 5.1.x (Xavier, Orin); see NGC for the JetPack 6 tags.
# Build (on the Jetson): docker build -f containers/device.Dockerfile -t edgeq-device --build-arg L4T_TAG=r8.5.2-runtime .
# Run:   docker run --rm --runtime nvidia -v "$HOME/.edgeq:/root/.edgeq" edgeq-device probe
ARG L4T_TAG=r8.5.2-runtime
FROM nvcr.io/nvidia/l4t-tensorrt:${L4T_TAG}

# The agent needs only Python 3.8+, numpy and TensorRT (in the base image).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-numpy \
 && rm -rf /var/lib/apt/lists/*

COPY edgeq/device /opt/edgeq_device/edgeq_device
ENV PYTHONPATH=/opt/edgeq_device

ENTRYPOINT ["python3", "-m", "edgeq_device"]
CMD ["probe"]
