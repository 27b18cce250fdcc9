"""Application-wide constants only (namespaces live with their plugin)."""

APP_NAME = "Libervia"
APP_NAME_FILE = "libervia"
APP_COMPONENT = "backend"
CONFIG_FILE_NAME = "libervia.conf"
CONFIG_ENV_VAR = "LIBERVIA_CONFIG"
DB_FILE_NAME = "libervia.db"
