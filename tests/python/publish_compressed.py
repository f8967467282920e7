"""A publisher for the integration tests that writes a topic as Pulsar's
Python client (the C++ client inside) does with compression on: segments of
keyed JSON rows, each segment from its own producer with its own codec,
batched or not, as tests/java/PublishCompressed.java does.

    PYTHONPATH=.stack/pulsar/python python3 tests/python/publish_compressed.py \
        pulsar://127.0.0.1:6650 TOPIC ROWS LZ4:batched ZSTD:single ...

Row ids run from 1 over all segments; each value names its segment.
Prints {"segment": ..., "sent": ...} per segment.
"""
import json
import sys

import pulsar

# The client's names for the codecs the Java client calls LZ4, ZLIB, ...
CODECS = {
    "NONE": pulsar.CompressionType.NONE,
    "LZ4": pulsar.CompressionType.LZ4,
    "ZLIB": pulsar.CompressionType.ZLib,
    "ZSTD": pulsar.CompressionType.ZSTD,
    "SNAPPY": pulsar.CompressionType.SNAPPY,
}


def main(url, topic, rows, segments):
    client = pulsar.Client(url)
    row = 0
    try:
        for segment in segments:
            codec, mode = segment.split(":")
            producer = client.create_producer(
                topic,
                compression_type=CODECS[codec],
                batching_enabled=mode == "batched",
                batching_max_messages=100,
                batching_max_publish_delay_ms=10,
                block_if_queue_full=True,
            )
            failed = []
            for _ in range(rows):
                row += 1
                value = '{"id":%d,"v":"%s row %d of a segment that compresses well, compresses well"}' % (
                    row, segment, row)
                producer.send_async(
                    value.encode(),
                    lambda result, _id: failed.append(result) if result != pulsar.Result.Ok else None,
                    partition_key='{"id":%d}' % row,
                )
            producer.flush()
            producer.close()
            if failed:
                raise SystemExit("%d sends failed: %s" % (len(failed), failed[0]))
            print(json.dumps({"segment": segment, "sent": rows}), flush=True)
    finally:
        client.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:])
