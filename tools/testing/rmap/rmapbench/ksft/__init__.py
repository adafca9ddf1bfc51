"""The kselftest contract: options, KTAP, result files, the runner, exit statuses."""
