"""Runnable example plugins. Serve one from the repository root, for example:

asyncplugin serve server.echo:Echo --port 50051
asyncplugin serve server.transcriber:Transcriber --port 50052
"""
