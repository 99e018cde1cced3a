"""moto's server for long runs (tests/soak.rs): the same SQS model, safe under concurrent
requests, with its hot spots made cheap.

The server answers requests on several threads, but moto's queue is not thread-safe: a delete
rebuilds the queue's message list and assigns it back, so two deletes at once can put back the
message the other one removed (it is then received again, acknowledged as a duplicate, and after
five receives moved to the DLQ), and a message sent meanwhile can vanish. With four workers
deleting at once that happened to dozens of orders in a 20,000-order run. Here every operation
that reads or changes a queue's messages holds that queue's lock (the one moto already takes to
append; its long-poll wait releases it while waiting).

moto 5 reads the clock through datetime arithmetic (about 12 us a call) twice per message each
time it lists a queue's visible messages; it checks every received message's retention, and
every sent message's deduplication setting, by computing all the queue's attributes, whose three
approximate counts are a full scan each. A receive on a queue holding 2,000 messages takes about
2 s, a send gets slower with every message waiting; with the tens of thousands a peak leaves
waiting, the emulator and not the service would set the pace. Replaced here:
- the clock: the wall clock read directly (moto's is the same unless time is frozen, which these
  tests never do);
- the retention check: reads the one attribute it needs;
- the approximate counts: one pass for all three, reused for 100 ms. SQS documents these counts as
  approximate (eventually consistent), so a count up to 100 ms old is within what SQS promises.

Usage: moto_server.py -H HOST -p PORT (the arguments of `moto_server`).
"""

import sys
import time

import moto.sqs.models as sqs_models
from moto.server import main


def unix_time(dt=None):
    return time.time() if dt is None else _unix_time(dt)


def unix_time_millis(dt=None):
    return time.time() * 1000.0 if dt is None else _unix_time_millis(dt)


def is_message_valid_based_on_retention_period(self, queue_name, message):
    queue = self.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > time.time()


COUNTS_FRESH_FOR_MS = 100


def approximate_counts(queue):
    """(visible and not delayed, not visible, delayed), as moto's three properties count them."""
    now = time.time() * 1000.0
    cached = getattr(queue, "_approximate_counts", None)
    if cached is not None and now - cached[0] < COUNTS_FRESH_FOR_MS:
        return cached[1]
    visible = not_visible = delayed = 0
    for m in queue._messages:
        is_visible = now > m.visible_at
        is_delayed = now < m.delayed_until
        visible += is_visible and not is_delayed
        not_visible += not is_visible
        delayed += is_delayed
    counts = (visible, not_visible, delayed)
    queue._approximate_counts = (now, counts)
    return counts


_unix_time = sqs_models.unix_time
_unix_time_millis = sqs_models.unix_time_millis
sqs_models.unix_time = unix_time
sqs_models.unix_time_millis = unix_time_millis
sqs_models.SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period
sqs_models.Queue.approximate_number_of_messages = property(lambda q: approximate_counts(q)[0])
sqs_models.Queue.approximate_number_of_messages_not_visible = property(lambda q: approximate_counts(q)[1])
sqs_models.Queue.approximate_number_of_messages_delayed = property(lambda q: approximate_counts(q)[2])

def holding_queue_lock(method):
    def locked(self, queue_name, *args, **kwargs):
        with self.get_queue(queue_name)._messages_lock:
            return method(self, queue_name, *args, **kwargs)

    locked.__name__ = method.__name__
    return locked


for _name in (
    "send_message",
    "send_message_batch",
    "receive_message",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
    "purge_queue",
):
    setattr(sqs_models.SQSBackend, _name, holding_queue_lock(getattr(sqs_models.SQSBackend, _name)))

if __name__ == "__main__":
    sys.exit(main())
