"""Cluster mode: one recognizer over many GPUs and nodes, on Ray (docs/CLUSTER.md).

``python run_stream.py --cluster ADDRESS`` runs :class:`streamer.cluster.head.ClusterHead` instead of
the single-machine :class:`streamer.pipeline.Pipeline`:

```
 worker actor w0 (Ray, its own GPU): Pipeline over its share --PUB--\
 worker actor w1 ...:                Pipeline over its share --PUB--> head: hub (XSUB per feed -> XPUB) --> subscribers
                                                                           `-- last-value cache --> snapshot socket
 head main thread: fleet (health, cost-balanced placement, reassignment) --Ray actor calls--> the workers
```

| module | job |
|---|---|
| ``cost`` | the expected cost of a source (frames/s x pixels) and the balanced placement (no Ray, no sockets) |
| ``hub`` | the head's proxy thread: one XSUB socket per worker feed into one XPUB; fences streams to their owner, keeps ``seq`` increasing, names the worker in status, feeds the merged snapshot |
| ``worker`` | what a worker actor does, without Ray: runs the existing ``Pipeline`` over each share it is given, reports health |
| ``fleet`` | the head's worker management, without Ray: slots, health, placement, loss and reassignment |
| ``raybackend`` | the only module that imports Ray: starting or joining it, the actors, their calls, the clean-up |
| ``control`` | the control API over the fleet: add/remove/update/list/reload/health/rebalance on the head's one control address, each carried out by the worker that owns (or will own) the stream |
| ``head`` | ``ClusterHead.run``: binds the three addresses, runs the fleet until stopped, shuts everything down |

Ray is imported only by ``raybackend`` (and the actor class it defines), and only when ``--cluster``
is given: single-machine mode never imports it (the ``[cluster]`` extra installs it).
"""
