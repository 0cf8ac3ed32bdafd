"""Transactional outbox for Celery tasks: a task requested inside a transaction is stored in that
transaction, and published to the broker after commit, or later, if the broker (Redis) was down.

Every `task.delay_on_commit(...)` in this project goes through it (governance.celery sets
OutboxTask as the app's task class), so no caller changes. See core/outbox/services.py.
"""
