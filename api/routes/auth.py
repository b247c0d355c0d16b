"""Register and log in; both answer with the user and a token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from api.deps import SessionDep, SettingsDep, ThrottleDep
from api.schemas import AuthAnswer, LoginIn, RegisterIn, errors
from api.security import create_token, hash_password, verify_password
from kiln.models import User

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _user(user: User) -> dict[str, Any]:
    return {"id": user.id, "email": user.email, "name": user.name}


@router.post("/register", status_code=201, response_model=AuthAnswer, responses=errors(400, 409))
def register(body: RegisterIn, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    email = body.email.lower()
    if session.scalar(select(User.id).where(func.lower(User.email) == email)) is not None:
        raise HTTPException(409, "Email is already registered")
    user = User(email=email, name=body.name, password_hash=hash_password(body.password))
    session.add(user)
    try:
        session.commit()
    except IntegrityError:  # the same email registered concurrently
        session.rollback()
        raise HTTPException(409, "Email is already registered") from None
    token = create_token(user.id, settings.jwt_secret, settings.jwt_ttl_seconds)
    return {"message": "User registered", "user": _user(user), "token": token}


@router.post("/login", response_model=AuthAnswer, responses=errors(400, 401, 429))
def login(
    body: LoginIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
) -> dict[str, Any]:
    """Failed logins are throttled per account and per client address (429 while throttled,
    even for the right password); an unknown email costs the same time as a wrong password."""
    attempt = throttle.begin(body.email, request.client.host if request.client else None)
    user = session.scalar(select(User).where(func.lower(User.email) == body.email.lower()))
    # End the read before the slow hash check (on SQLite a transaction holds the write lock).
    session.commit()
    matches = verify_password(user.password_hash if user else None, body.password)
    if user is None or not matches:
        raise HTTPException(401, "Invalid email or password")
    throttle.succeeded(attempt)
    token = create_token(user.id, settings.jwt_secret, settings.jwt_ttl_seconds)
    return {"message": "Logged in", "user": _user(user), "token": token}
