"""Register and log in; both answer with the user and a token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from api.deps import SessionDep, SettingsDep
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


@router.post("/login", response_model=AuthAnswer, responses=errors(400, 401))
def login(body: LoginIn, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    user = session.scalar(select(User).where(func.lower(User.email) == body.email.lower()))
    if user is None or not verify_password(user.password_hash, body.password):
        raise HTTPException(401, "Invalid email or password")
    token = create_token(user.id, settings.jwt_secret, settings.jwt_ttl_seconds)
    return {"message": "Logged in", "user": _user(user), "token": token}
