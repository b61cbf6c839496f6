"""bluesky-queueserver for insitu's plans: the RE Manager with Redis on loopback, and the startup
module that opens one bench.
"""

from .service import (
    ENV_DATA,
    ENV_POTENTIOSTAT,
    ENV_SIM_PROTOCOL,
    ENV_SPEEDUP,
    ENV_TOMO,
    LOOPBACK,
    REDIS_SERVER_ENV_VAR,
    STARTUP_MODULE,
    USER_GROUP_PERMISSIONS,
    QueueServer,
    QueueServerError,
    RedisProcess,
    queue_server,
    redis_server_executable,
    start_redis,
)

__all__ = [
    "ENV_DATA",
    "ENV_POTENTIOSTAT",
    "ENV_SIM_PROTOCOL",
    "ENV_SPEEDUP",
    "ENV_TOMO",
    "LOOPBACK",
    "REDIS_SERVER_ENV_VAR",
    "STARTUP_MODULE",
    "USER_GROUP_PERMISSIONS",
    "QueueServer",
    "QueueServerError",
    "RedisProcess",
    "queue_server",
    "redis_server_executable",
    "start_redis",
]
