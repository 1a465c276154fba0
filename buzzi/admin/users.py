"""Admin users: owners see and manage everyone; a company admin sees only themselves and may change
only their own e-mail and password.

A password, role or company change and disabling replace the user's session version, so every token
issued before (API and dashboard alike, on every node) is refused from then on."""

from __future__ import annotations

import asyncio
from typing import Any

from buzzi.admin import scope
from buzzi.admin import validation as v
from buzzi.auth import Principal, new_session_version
from buzzi.crypto import hash_password
from buzzi.errors import Conflict, Forbidden, Invalid, NotFound
from buzzi.ids import new_id
from buzzi.models import ROLES, User
from buzzi.store.base import DuplicateKey, Store

CREATE_FIELDS = ("email", "password", "role", "companyId")
FIELDS = (*CREATE_FIELDS, "disabled")
OWNER_ONLY = ("role", "companyId", "disabled")


class UserService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def list(self, principal: Principal) -> list[User]:
        if principal.is_owner:
            return await self.store.find(User)
        me = await self.store.get(User, principal.user_id)
        return [me] if me else []

    async def get(self, principal: Principal, user_id: str) -> User:
        user = await self.store.get(User, user_id)
        if user is None or not (principal.is_owner or user.id == principal.user_id):
            raise NotFound()
        return user

    async def create(self, principal: Principal, data: Any) -> User:
        scope.require_owner(principal)
        data = v.body_object(data)
        v.only(data, CREATE_FIELDS)
        email = v.email(v.require(data, "email"))
        password = v.password(v.require(data, "password"))
        role = v.choice(data.get("role", "company_admin"), "role", ROLES)
        company_id = await self._company_for_role(principal, role, data.get("companyId"))
        user = User(id=new_id("user"), email=email, password_hash=await _hash(password), role=role,
                    company_id=company_id)
        try:
            return await self.store.add(user)
        except DuplicateKey:
            raise Conflict("A user with this e-mail already exists", field="email") from None

    async def update(self, principal: Principal, user_id: str, data: Any) -> User:
        user = await self.get(principal, user_id)
        data = v.body_object(data)
        v.only(data, FIELDS)
        if not principal.is_owner and any(key in data for key in OWNER_ONLY):
            raise Forbidden("Only an owner may change a role, company or disabled state")
        changes: dict[str, Any] = {}
        if "email" in data:
            changes["email"] = v.email(data["email"])
        if "password" in data:
            changes["password_hash"] = await _hash(v.password(data["password"]))
        if "role" in data or "companyId" in data:
            changes.update(await self._role_changes(principal, user, data))
        if "disabled" in data:
            changes["disabled"] = v.boolean(data["disabled"], "disabled")
            if changes["disabled"] and user.role == "owner":
                await self._keep_an_owner(user.id)
        if not changes:
            return user
        if _ends_sessions(user, changes):
            changes["session_version"] = new_session_version()
        try:
            updated = await self.store.update(User, user.id, changes)
        except DuplicateKey:
            raise Conflict("A user with this e-mail already exists", field="email") from None
        if updated is None:
            raise NotFound()
        return updated

    async def _role_changes(self, principal: Principal, user: User, data: dict[str, Any]) -> dict[str, Any]:
        role = v.choice(data.get("role", user.role), "role", ROLES)
        company_id = data["companyId"] if "companyId" in data else user.company_id
        if role == "owner":
            company_id = None if "companyId" not in data else company_id
        company_id = await self._company_for_role(principal, role, company_id)
        if user.role == "owner" and role != "owner":
            await self._keep_an_owner(user.id)
        return {"role": role, "company_id": company_id}

    async def delete(self, principal: Principal, user_id: str) -> None:
        user = await self.get(principal, user_id)
        scope.require_owner(principal)
        if user.role == "owner":
            await self._keep_an_owner(user.id)
        await self.store.delete(User, user.id)

    async def _company_for_role(self, principal: Principal, role: str, company_id: Any) -> str | None:
        if role == "owner":
            if company_id is not None:
                raise Invalid("companyId", "an owner belongs to no company")
            return None
        if company_id is None:
            raise Invalid("companyId", "is required for a company_admin")
        company_id = v.string(company_id, "companyId")
        try:
            await scope.company(self.store, principal, company_id)
        except NotFound:
            raise Invalid("companyId", "no such company") from None
        return company_id

    async def _keep_an_owner(self, user_id: str) -> None:
        owners = await self.store.find(User, role="owner")
        if not [o for o in owners if o.id != user_id and not o.disabled]:
            raise Conflict("The last owner cannot be removed, demoted or disabled")


def _ends_sessions(user: User, changes: dict[str, Any]) -> bool:
    """A new password, another role or company, or disabling: the user's older tokens must stop working."""
    return ("password_hash" in changes or changes.get("role", user.role) != user.role
            or changes.get("company_id", user.company_id) != user.company_id
            or changes.get("disabled", user.disabled) != user.disabled)


async def _hash(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)
