"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 03:51:23.057907
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('user_id', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('project_id', sa.String(length=200), nullable=True),
    sa.Column('execution_id', sa.UUID(), nullable=True),
    sa.Column('correlation_id', sa.String(length=128), nullable=False),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_index(op.f('ix_audit_log_project_id'), 'audit_log', ['project_id'], unique=False)
    op.create_table('events',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('workflow_type', sa.String(length=64), nullable=False),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('task_context', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('project_id', sa.String(length=200), nullable=False),
    sa.Column('user_id', sa.String(length=200), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('idempotency_hash', sa.String(length=64), nullable=True),
    sa.Column('correlation_id', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events'))
    )
    op.create_index(op.f('ix_events_project_id'), 'events', ['project_id'], unique=False)
    op.create_index('uq_events_user_id_project_id_idempotency_key', 'events', ['user_id', 'project_id', 'idempotency_key'], unique=True, postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.create_table('idempotency_keys',
    sa.Column('user_id', sa.String(length=200), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('response_headers', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('response_body', sa.LargeBinary(), nullable=True),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_index(op.f('ix_idempotency_keys_expires_at'), 'idempotency_keys', ['expires_at'], unique=False)
    op.create_table('notifications',
    sa.Column('pos', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('execution_id', sa.UUID(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('customer_id', sa.String(length=100), nullable=False),
    sa.Column('project_id', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('pos', name=op.f('pk_notifications')),
    sa.UniqueConstraint('execution_id', 'seq', name=op.f('uq_notifications_execution_id_seq'))
    )
    op.create_index('ix_notifications_customer_pos', 'notifications', ['customer_id', 'pos'], unique=False)
    op.create_index('ix_notifications_project_pos', 'notifications', ['project_id', 'pos'], unique=False)
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('execution_id', sa.UUID(), nullable=True),
    sa.Column('customer_id', sa.String(length=100), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('correlation_id', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dispatch_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    op.create_index('ix_outbox_inflight', 'outbox', ['customer_id', 'dispatched_at'], unique=False, postgresql_where=sa.text('dispatched_at IS NOT NULL AND completed_at IS NULL'))
    op.create_index('ix_outbox_undispatched', 'outbox', ['available_at', 'id'], unique=False, postgresql_where=sa.text('dispatched_at IS NULL'))
    op.create_table('projects',
    sa.Column('project_id', sa.String(length=200), nullable=False),
    sa.Column('customer_id', sa.String(length=100), nullable=False),
    sa.Column('repository_url', sa.Text(), nullable=False),
    sa.Column('default_branch', sa.String(length=255), nullable=True),
    sa.Column('task_list_path', sa.String(length=500), nullable=True),
    sa.Column('verification', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('quota', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('project_id', name=op.f('pk_projects'))
    )
    op.create_index(op.f('ix_projects_customer_id'), 'projects', ['customer_id'], unique=False)
    op.create_table('sandbox_leases',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('customer_id', sa.String(length=100), nullable=False),
    sa.Column('holder', sa.String(length=255), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('granted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('execution_id', sa.String(length=64), nullable=True),
    sa.Column('alive_until', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('placed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_leases')),
    sa.UniqueConstraint('holder', name=op.f('uq_sandbox_leases_holder'))
    )
    op.create_index('ix_sandbox_leases_customer_id_granted', 'sandbox_leases', ['customer_id', 'granted_at'], unique=False)
    op.create_table('stream_position',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('pos', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('pruned_pos', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stream_position'))
    )
    op.execute("INSERT INTO stream_position (id, pos) VALUES (1, 0)")
    op.create_table('executions',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('project_id', sa.String(length=200), nullable=False),
    sa.Column('customer_id', sa.String(length=100), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('pause_reason', sa.String(length=32), nullable=True),
    sa.Column('stop_point', sa.String(length=200), nullable=True),
    sa.Column('single_task_id', sa.String(length=200), nullable=True),
    sa.Column('current_task_id', sa.String(length=200), nullable=True),
    sa.Column('current_stage', sa.String(length=32), nullable=True),
    sa.Column('branch', sa.String(length=255), nullable=True),
    sa.Column('completed_tasks', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('total_tasks', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_update', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('pending_command', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('error_id', sa.UUID(), nullable=True),
    sa.Column('correlation_id', sa.String(length=128), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_executions_event_id_events')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.project_id'], name=op.f('fk_executions_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_executions'))
    )
    op.create_index('ix_executions_project_started', 'executions', ['project_id', sa.literal_column('started_at DESC')], unique=False)
    op.create_index('ix_executions_user_started', 'executions', ['user_id', sa.literal_column('started_at DESC')], unique=False)
    op.create_index('uq_executions_active_project', 'executions', ['project_id'], unique=True, postgresql_where=sa.text("status IN ('initializing', 'running', 'paused', 'stopping')"))
    op.create_table('injected_tasks',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('project_id', sa.String(length=200), nullable=False),
    sa.Column('task_id', sa.String(length=200), nullable=False),
    sa.Column('injection_type', sa.String(length=16), nullable=False),
    sa.Column('position', sa.Integer(), nullable=True),
    sa.Column('replace_task_id', sa.String(length=200), nullable=True),
    sa.Column('task', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('source_error_id', sa.UUID(), nullable=True),
    sa.Column('origin_task_id', sa.String(length=200), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.project_id'], name=op.f('fk_injected_tasks_project_id_projects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_injected_tasks')),
    sa.UniqueConstraint('project_id', 'task_id', name=op.f('uq_injected_tasks_project_id_task_id'))
    )
    op.create_index('ix_injected_tasks_pending', 'injected_tasks', ['project_id', 'status'], unique=False)
    op.create_table('errors',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('execution_id', sa.UUID(), nullable=False),
    sa.Column('task_id', sa.String(length=200), nullable=True),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('classification', sa.String(length=32), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['execution_id'], ['executions.id'], name=op.f('fk_errors_execution_id_executions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_errors'))
    )
    op.create_index(op.f('ix_errors_execution_id'), 'errors', ['execution_id'], unique=False)
    op.create_table('stage_runs',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('execution_id', sa.UUID(), nullable=False),
    sa.Column('task_id', sa.String(length=200), nullable=False),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('pass_no', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('command_id', sa.BigInteger(), nullable=True),
    sa.Column('lease_owner', sa.String(length=128), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claims', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('error', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('usage', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.ForeignKeyConstraint(['execution_id'], ['executions.id'], name=op.f('fk_stage_runs_execution_id_executions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stage_runs')),
    sa.UniqueConstraint('execution_id', 'task_id', 'stage', 'pass_no', 'attempt', name=op.f('uq_stage_runs_execution_id_task_id_stage_pass_no_attempt'))
    )
    op.create_index('ix_stage_runs_running_lease', 'stage_runs', ['lease_until'], unique=False, postgresql_where=sa.text("status = 'running'"))


def downgrade() -> None:
    op.drop_index('ix_stage_runs_running_lease', table_name='stage_runs', postgresql_where=sa.text("status = 'running'"))
    op.drop_table('stage_runs')
    op.drop_index(op.f('ix_errors_execution_id'), table_name='errors')
    op.drop_table('errors')
    op.drop_index('ix_injected_tasks_pending', table_name='injected_tasks')
    op.drop_table('injected_tasks')
    op.drop_index('uq_executions_active_project', table_name='executions', postgresql_where=sa.text("status IN ('initializing', 'running', 'paused', 'stopping')"))
    op.drop_index('ix_executions_user_started', table_name='executions')
    op.drop_index('ix_executions_project_started', table_name='executions')
    op.drop_table('executions')
    op.drop_table('stream_position')
    op.drop_index('ix_sandbox_leases_customer_id_granted', table_name='sandbox_leases')
    op.drop_table('sandbox_leases')
    op.drop_index(op.f('ix_projects_customer_id'), table_name='projects')
    op.drop_table('projects')
    op.drop_index('ix_outbox_undispatched', table_name='outbox', postgresql_where=sa.text('dispatched_at IS NULL'))
    op.drop_index('ix_outbox_inflight', table_name='outbox', postgresql_where=sa.text('dispatched_at IS NOT NULL AND completed_at IS NULL'))
    op.drop_table('outbox')
    op.drop_index('ix_notifications_project_pos', table_name='notifications')
    op.drop_index('ix_notifications_customer_pos', table_name='notifications')
    op.drop_table('notifications')
    op.drop_index(op.f('ix_idempotency_keys_expires_at'), table_name='idempotency_keys')
    op.drop_table('idempotency_keys')
    op.drop_index('uq_events_user_id_project_id_idempotency_key', table_name='events', postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.drop_index(op.f('ix_events_project_id'), table_name='events')
    op.drop_table('events')
    op.drop_index(op.f('ix_audit_log_project_id'), table_name='audit_log')
    op.drop_table('audit_log')
